"""A real webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures, and the
events and configs the alert tests share."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from helpers.cli import free_port_range
from helpers.servers import LoopbackProvider, QuietHandler
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from auditor.operations.settings import AlertsConfig
from auditor.records import AlertEvent, Diagnosis, Evidence, IncidentInfo

# Two secrets (base64 of 24 bytes each), as a rotation would hold them.
OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@dataclass
class Received:
    """One request as the receiver saw it."""

    msg_id: str
    timestamp: str
    signature: str
    body: bytes
    verified: bool
    status: int
    at: float  # time.monotonic()
    duplicate: bool = False


@dataclass
class Reply:
    """A scripted answer: `status`, extra `headers`, `delay` before answering (after
    processing, so a timeout makes a real duplicate), a `body`; `echo` appends the received
    signature header and the receiver's secret to the body (a careless error page)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: str = ""
    echo: bool = False


class Receiver(LoopbackProvider):
    """A webhook consumer: verifies the signature with any of `secrets`, de-duplicates by
    `webhook-id` (a message is processed once, a repeat is acknowledged with 200), and
    answers as scripted (`replies`, consumed in order; then 200). It can be down: not
    listening on its port until `start()`."""

    def __init__(self, secrets: list[str], port: int | None = None) -> None:
        self.secrets = secrets
        self.port = port or free_port_range(1)
        self.replies: list[Reply] = []
        self.requests: list[Received] = []
        self.processed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/auditor"

    def script(self, *replies: Reply) -> Receiver:
        self.replies.extend(replies)
        return self

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def handle(self, headers: dict[str, str], body: bytes) -> Reply:
        verified = self.verify(body, headers)
        msg_id = headers.get("webhook-id", "")
        with self._lock:
            duplicate = msg_id in self.processed
            if not verified:
                reply = Reply(400, body="bad signature")
            elif duplicate:
                reply = Reply(200, body="duplicate")  # de-duplicated: not processed again
            else:
                reply = self.replies.pop(0) if self.replies else Reply()
                if reply.echo:
                    sig = headers.get("webhook-signature", "")
                    reply = Reply(reply.status, reply.headers, body=f"{sig} {self.secrets[0]}")
                if reply.status < 300 or reply.delay:
                    # Processed: a 2xx, or one answered too late (the sender will retry).
                    self.processed[msg_id] = json.loads(body)
            self.requests.append(
                Received(
                    msg_id=msg_id,
                    timestamp=headers.get("webhook-timestamp", ""),
                    signature=headers.get("webhook-signature", ""),
                    body=body,
                    verified=verified,
                    status=reply.status,
                    at=time.monotonic(),
                    duplicate=duplicate,
                )
            )
        return reply

    def start(self) -> Self:
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                reply = outer.handle(self.lower_headers(), self.body())
                if reply.delay:
                    time.sleep(reply.delay)
                with contextlib.suppress(OSError):  # the sender may have given up waiting
                    self.reply(reply.status, reply.body.encode(), None, reply.headers)

        self.serve(Handler, self.port)
        return super().start()

    def ids(self) -> list[str]:
        return [r.msg_id for r in self.requests]


def alerts_config(*sinks: dict[str, Any], **fields: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({"sinks": list(sinks), **fields})


def sink(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "secret_env": "HOOK_SECRET",
        "min_severity": "info",
        "timeout_s": 2,
        **fields,
    }


T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def incident_event(
    incident_id: int = 7,
    *,
    type_: str = "incident.opened",
    severity: str = "critical",
    model: str = "llama-3.1-8b-instruct",
    provider: str = "ember",
    kind: str = "provider",
) -> AlertEvent:
    info = IncidentInfo(
        id=incident_id,
        model=model,
        provider=provider,
        kind=kind,  # type: ignore[arg-type]
        state="open" if type_ == "incident.opened" else "resolved",
        verdict="deviant",
        severity=severity,  # type: ignore[arg-type]
        summary="deviant: system_prompt (0.79)",
        diagnoses=[
            Diagnosis(
                kind="system_prompt",
                confidence=0.79,
                summary="every request billed 41 more prompt tokens; tone moved",
            )
        ],
        opened_round_id="3c7d2af2028e",
        last_round_id="3c7d2af2028e",
        opened_at=T0,
        resolved_at=T0 if type_ == "incident.resolved" else None,
    )
    evidence = [
        Evidence(
            probe="capital-france",
            reference="The capital of France is Paris.",
            provider="Oh, what a wonderful question! " * 30,
            note="greedy; diverges at token 1",
        )
        for _ in range(4)
    ]
    return AlertEvent(
        type=type_,  # type: ignore[arg-type]
        incident=info,
        evidence=evidence if type_ == "incident.opened" else [],
        round_id="3c7d2af2028e",
    )
