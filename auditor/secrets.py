"""Keep secret values out of everything the auditor writes.

Keys are only ever read from the environment. A provider may still echo a key back (in an
error message, say), so every stored payload and log line also passes through a `Redactor`
that replaces the configured secret values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from auditor.config import AuditorConfig, EndpointReference
from auditor.records import CompletionResponse

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values are too likely to occur by chance to be replaced


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    @classmethod
    def from_config(cls, config: AuditorConfig) -> Redactor:
        values: list[str] = []
        refs = [config.reference, *(m.reference for m in config.models)]
        env_names = [p.api_key_env for m in config.models for p in m.providers]
        env_names += [r.api_key_env for r in refs if isinstance(r, EndpointReference)]
        values += [os.environ.get(n or "", "") for n in env_names if n]
        values += [v for m in config.models for p in m.providers for v in p.headers.values()]
        for sink in config.alerts.sinks:  # webhook secrets, several while rotating
            values += os.environ.get(sink.secret_env, "").split()
        values.append(os.environ.get(config.server.token_env, ""))  # the dashboard's token
        return cls(values)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, obj: Any) -> Any:
        if not self.secrets:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.value(k): self.value(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        return obj

    def redact_response(self, response: CompletionResponse) -> CompletionResponse:
        if not self.secrets:
            return response
        data = self.value(response.model_dump(mode="python"))
        return CompletionResponse.model_validate(data)

    def structlog_processor(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        redacted: Mapping[str, Any] = self.value(event)  # a mapping in, a mapping out
        return redacted
