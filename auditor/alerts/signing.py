"""Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The signature is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, computed by the
`standardwebhooks` package. While a secret is being rotated the sink's variable holds several
space-separated `whsec_` secrets and the header carries one `v1,` signature per secret,
space-separated, as the standard allows: a receiver holding either secret verifies.

Secret values are read from the environment at signing time and go nowhere else: errors
name the variable, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

from auditor import __version__
from auditor.operations.settings import WebhookSink
from auditor.records import canonical_json

PREFIX = "whsec_"
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class SecretError(Exception):
    """A sink's secret variable is unset or holds no usable `whsec_` secret. The message
    names the variable only."""


def signers_for(sink: WebhookSink, environ: Mapping[str, str] | None = None) -> list[Webhook]:
    """One signer per secret in the sink's variable (several while rotating)."""
    env = os.environ if environ is None else environ
    raw = env.get(sink.secret_env, "")
    parts = raw.split()
    if not parts:
        raise SecretError(f"environment variable {sink.secret_env} is not set")
    signers = []
    for i, part in enumerate(parts, start=1):
        key = part.removeprefix(PREFIX)
        if not part.startswith(PREFIX) or not _BASE64.match(key):
            raise SecretError(
                f"environment variable {sink.secret_env}: secret {i} of {len(parts)} is not "
                f"a {PREFIX} secret (whsec_ followed by base64)"
            )
        signers.append(Webhook(part))
    return signers


def body_text(body: object) -> str:
    """The exact text sent: canonical JSON, so that every retry sends the same bytes."""
    return canonical_json(body)


def signed_headers(
    msg_id: str, body: str, signers: list[Webhook], when: datetime | None = None
) -> dict[str, str]:
    """Headers for one attempt. `when` is the attempt's wall-clock time (receivers reject a
    timestamp more than five minutes from their own clock)."""
    seconds = int((when or datetime.now(UTC)).timestamp())
    stamp = datetime.fromtimestamp(seconds, UTC)
    signatures = " ".join(s.sign(msg_id, stamp, body) for s in signers)
    return {
        "content-type": "application/json",
        "user-agent": f"provider-auditor/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": signatures,
    }
