"""The one interface every endpoint implements, providers and reference engines alike."""

from __future__ import annotations

from abc import ABC, abstractmethod

from auditor.plugins import Registry
from auditor.records import CompletionRequest, CompletionResponse


class ProviderAdapter(ABC):
    """Sends one request to one endpoint. Never raises for a bad answer: a failure is a
    `CompletionResponse` with `ok=False` and an `error_class`."""

    name: str

    @abstractmethod
    async def complete(self, request: CompletionRequest) -> CompletionResponse: ...

    async def aclose(self) -> None:
        """Release connections; adapters holding none need not override."""
        return None


adapters: Registry[type[ProviderAdapter]] = Registry("provider adapter", group="auditor.adapters")
