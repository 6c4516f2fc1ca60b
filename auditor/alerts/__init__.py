"""Webhook alerts: incident events -> an outbox table -> signed HTTP deliveries.

- `payload`: what a sink is told (`body_for`) and which sinks want an event (`wants`).
- `outbox`: the `webhook_outbox` rows (`enqueue`, `due`, claims and state changes).
- `signing`: Standard Webhooks headers, one `v1,` signature per secret while rotating.
- `delivery`: one pass over the due messages (`deliver_due`) and the daemon's `Deliverer`.

Delivery is at least once: a message keeps its id (the `webhook-id` header) and body on
every retry, so a receiver de-duplicates by id.
"""
