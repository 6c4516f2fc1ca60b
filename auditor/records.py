"""Typed records that cross the arrows of the data flow.

probes -> ProbeCase -> CompletionRequest -> (adapter) -> CompletionResponse -> stored sample
-> Score -> Finding. Each record is a pydantic model so that every hand-off is validated and
every stored row can be re-read into the same shape.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, so that hashes are reproducible."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class RequestParams(Strict):
    """Request fields a probe may set; anything unset is left to the provider's default."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    # Beyond the OpenAI API, as vLLM, SGLang and llama.cpp's server take them (the model
    # profile's recommended sampler sends them explicitly).
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    n: int | None = Field(default=None, ge=1, le=16)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Expect(Strict):
    """The expected answer of a probe: exactly one of exact, regex, number or json_schema."""

    exact: str | None = None
    regex: str | None = None
    number: float | None = None
    json_schema: dict[str, Any] | None = None
    tolerance: float = Field(default=0.0, ge=0)
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> Expect:
        given = [
            k for k in ("exact", "regex", "number", "json_schema") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("expect needs exactly one of exact, regex, number, json_schema")
        return self

    @property
    def kind(self) -> str:
        for k in ("exact", "regex", "number", "json_schema"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("unreachable")


_ADDED_CASE_FIELDS = ("reasoning_effort", "stream")
_ADDED_PARAMS = ("n", "presence_penalty", "frequency_penalty")


class ProbeCase(Strict):
    """One probe after expansion: what is sent, how often, and what it should produce."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
    suite: str
    description: str | None = None
    messages: list[Message] = Field(min_length=1)
    params: RequestParams = Field(default_factory=RequestParams)
    samples: int = Field(default=1, ge=1, le=1000)
    signals: list[str] = Field(default_factory=list)
    expect: Expect | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The reasoning effort level asked for, one of the model profile's levels (sent the way
    # each provider takes it); None: none asked, and a model that reasons uses its default.
    reasoning_effort: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")
    # Sent streamed whatever the provider's own `stream` (the streaming-parity twins, the
    # `stream_twins` generator); None: as the provider is configured.
    stream: bool | None = None

    @property
    def content_hash(self) -> str:
        """Hash of everything that changes what is sent or how it is judged. Fields added
        since the first release count only when set, so that older cases keep their hash
        (and their reference cache, and their history)."""
        data = self.model_dump(mode="json", exclude={"description"})
        for added in _ADDED_CASE_FIELDS:
            if data.get(added) is None:
                data.pop(added, None)
        for added in _ADDED_PARAMS:
            if data["params"].get(added) is None:
                data["params"].pop(added, None)
        return content_hash(data)

    def with_output_budget(self, reasoning: int | None, cap: int | None) -> ProbeCase:
        """The case as sent to a model that may spend `reasoning` tokens reasoning before its
        answer (added to max_tokens, which budgets the answer) and whose answers hold at
        most `cap` tokens (max_tokens cut to it)."""
        tokens = self.params.max_tokens
        if tokens is None:
            return self
        sent = min(tokens + (reasoning or 0), cap or tokens + (reasoning or 0))
        if sent == tokens:
            return self
        return self.model_copy(
            update={"params": self.params.model_copy(update={"max_tokens": sent})}
        )

    def with_sampler(self, sampler: RequestParams) -> ProbeCase:
        """The case as sent to a model whose profile recommends `sampler`: a sampled case
        (temperature > 0) takes every sampler field it leaves unset; a greedy one is as is."""
        if not self.params.temperature:
            return self
        unset = {k: v for k, v in sampler.model_dump(exclude_none=True).items()
                 if getattr(self.params, k) is None}  # fmt: skip
        if not unset:
            return self
        return self.model_copy(update={"params": self.params.model_copy(update=unset)})


class CompletionRequest(Strict):
    """One request of a round: a probe case, sample number k, ready for any provider."""

    probe_id: str
    probe_hash: str
    sample_index: int = Field(ge=0)
    messages: list[Message]
    params: RequestParams
    stream: bool = False
    reasoning_effort: str | None = None  # the level asked for (`ProbeCase.reasoning_effort`)

    @classmethod
    def from_case(cls, case: ProbeCase, sample_index: int) -> CompletionRequest:
        return cls(
            probe_id=case.id,
            probe_hash=case.content_hash,
            sample_index=sample_index,
            messages=case.messages,
            params=case.params,
            reasoning_effort=case.reasoning_effort,
            stream=bool(case.stream),
        )


class Usage(Strict):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    # `usage.completion_tokens_details.reasoning_tokens`: of the completion tokens, those
    # spent reasoning (None: not reported)
    reasoning_tokens: int | None = None

    @property
    def spent(self) -> int:
        if self.total_tokens is not None:
            return self.total_tokens
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class ErrorClass(StrEnum):
    """Why a request produced no usable answer. Errors are never behaviour differences, but
    for `context_length_exceeded`: the provider's own statement that a prompt does not fit its
    context, which says where its effective context window ends (the counts it stated start
    the error message, see `auditor.providers.context_length`)."""

    AUTH = "auth"  # 401, 403
    NOT_FOUND = "not_found"  # 404
    RATE_LIMITED = "rate_limited"  # 429 after retries
    SERVER_ERROR = "server_error"  # 5xx after retries
    CLIENT_ERROR = "client_error"  # other 4xx
    # the prompt refused as longer than the context allows, whatever the status (400, 500...)
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    API_ERROR = "api_error"  # 200 carrying an error object
    PROTOCOL_ERROR = "protocol_error"  # unparseable or off-spec body or stream
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    NETWORK_ERROR = "network_error"  # connection reset or broken mid-response
    INTERNAL_ERROR = "internal_error"  # the auditor's own adapter failed on this request


class CompletionResponse(Strict):
    """What came back from one endpoint for one request, raw payloads included.

    `raw_request` is the JSON body as sent (never headers, so never a key). `raw_response`
    is the decoded JSON body, `{"chunks": [...]}` for a stream, or `{"raw_text": ...}` when
    the body was not JSON.
    """

    ok: bool
    status_code: int | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None
    text: str | None = None
    # The reasoning returned beside the answer, and the field it came in (`reasoning` or
    # `reasoning_content`, in the message or the streamed deltas). Reasoning left inside
    # `text` (`<think>...</think>`) stays there: it is a leak to score, never stripped.
    reasoning: str | None = None
    reasoning_source: str | None = None
    # The upstream host that served the answer, as a router names it (OpenRouter's top-level
    # `provider`); None: not a router, or it did not say.
    upstream: str | None = None
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[dict[str, Any]] | None = None
    served_model: str | None = None
    raw_request: dict[str, Any] = Field(default_factory=dict)
    raw_response: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    latency_s: float | None = None
    ttft_s: float | None = None
    attempts: int = 1
    cached: bool = False
    started_at: datetime = Field(default_factory=utcnow)


class ScoreRecord(Strict):
    """One number a scorer derived from one sample."""

    scorer: str
    scorer_params: dict[str, Any] = Field(default_factory=dict)
    metric: str
    value: float | None
    passed: bool | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


Verdict = Literal["consistent", "deviant", "unavailable", "inconclusive"]
Severity = Literal["info", "warning", "critical"]
#: The diagnosis kinds of the report contract; a plugin may register more (README, Plugins).
DiagnosisKind = Literal[
    "sampling_params",
    "context_truncation",
    "chat_template",
    "system_prompt",
    "max_tokens",
    "quantization",
    "model_variant",
    "tool_calling",
    "reasoning",
    "other",
]


class Diagnosis(Strict):
    # One of `DiagnosisKind`, or a kind a plugin registered (`auditor.comparisons.rules.kinds`).
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    confidence: float = Field(ge=0, le=1)
    summary: str


class TestResult(Strict):
    __test__ = False  # not a pytest test class, despite the name
    name: str
    statistic: float | None
    p_value: float | None
    effect: float | None
    honest_range: tuple[float | None, float | None] = (None, None)
    n: int
    # tested: p_value decides; figure: reported beside the tests, no p-value;
    # not_available: the signal needs something this round lacks (`note` says what).
    status: Literal["tested", "figure", "not_available"] = "tested"
    note: str | None = None


class Evidence(Strict):
    probe: str
    reference: str
    provider: str
    note: str


class LadderTask(Strict):
    """One task's answers at one rung of a context ladder, both sides."""

    task: str  # the case's metadata.task: needle, multikey, variable_tracking, aggregation
    provider_passed: int
    provider_tried: int  # answers scored (errors excluded)
    reference_passed: int
    reference_tried: int


class LadderRung(Strict):
    """One rung of a provider's context ladder (`auditor.stats.ladder` defines the verdict)."""

    length: int  # prompt tokens, as the reference's tokenizer counts the rung's prompts
    status: Literal["match", "fail", "unknown"]
    reason: Literal["refused", "billed_short", "pass_rate"] | None = None  # why it fails
    provider_passed: int
    provider_tried: int  # answers scored (errors excluded)
    reference_passed: int
    reference_tried: int
    refused: int = 0  # refused as too long, though the reference answered and the window holds
    errors: int = 0  # other errors, which say nothing about length
    billed_short: int = 0  # answers billed fewer prompt tokens than the reference counts
    # one-sided Boschloo test of a lower pass rate, pooled and task by task (auditor.stats.ladder)
    p_value: float | None = None
    confirmed: bool = False  # non-inferiority shown at this rung
    tasks: list[LadderTask] = Field(default_factory=list)  # the counts above, task by task


class ContextWindow(Strict):
    """A provider's effective context window, read from its context ladder answers, and what
    the ladder cost."""

    declared: int | None  # the window the model's profile declares (None: not declared)
    effective: int | None  # the longest rung answered like the reference (None: none)
    lower_bound: int | None  # how far that is confirmed
    breaks_at: int | None  # the first failing rung (None: none fails)
    reason: Literal["refused", "billed_short", "pass_rate"] | None = None
    summary: str
    rungs: list[LadderRung] = Field(default_factory=list)  # shortest first
    requests: int = 0  # ladder requests the provider was sent
    tokens: int = 0  # tokens it billed for them (prompt and completion)


class UpstreamShare(Strict):
    """The requests a router served from one upstream host, in one provider's round."""

    upstream: str
    answers: int  # answers it served
    errors: int = 0  # errors it returned (as the router named it in the error's body)
    off_pin: int = 0  # answers it served though the request pinned other upstreams


CapabilityStatus = Literal["honoured", "rejected", "ignored", "unknown"]


class Capability(Strict):
    """How one provider treated one request parameter the round probed for it."""

    parameter: str  # e.g. response_format.json_schema, stop, seed, n, logprobs
    status: CapabilityStatus
    # against_reference: the reference honours it and is the bar; own_behaviour: judged from
    # the provider's answers alone (the same seed twice, a stop string in the answer)
    judged: Literal["against_reference", "own_behaviour"]
    reference: CapabilityStatus | None = None  # the reference's own, where it was asked too
    answers: int = 0  # the provider's answers judged
    honoured: int = 0  # of which honoured the parameter
    note: str = ""  # what decided: a rejection's message, the answers that ignored it


class Finding(Strict):
    """One provider's assessment in one round (the report JSON contract)."""

    model: str
    provider: str
    baseline: Literal["reference", "history"]
    verdict: Verdict
    severity: Severity
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    tests: list[TestResult] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    requests: int
    errors: int
    tokens: int
    cost: float | None = None
    errors_by_class: dict[str, int] = Field(default_factory=dict)
    # From a context ladder (`auditor.comparisons.ladder`); None: the round asked none.
    context_window: ContextWindow | None = None
    # Behind a router: the answers of each upstream that served some (None: none named).
    upstreams: list[UpstreamShare] | None = None
    # Each request parameter the round probed (`auditor.judging.capabilities`); None: none.
    capabilities: list[Capability] | None = None


class IncidentInfo(Strict):
    """An incident as alerts and the API show it (see `auditor.alerts.incidents`)."""

    id: int
    model: str
    provider: str  # `auditor` for the auditor's own incidents
    kind: Literal["provider", "stale_rounds"]
    state: Literal["open", "resolved"]
    verdict: str  # what opened it: deviant | unavailable | stale
    severity: Severity
    summary: str
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    opened_round_id: str | None = None
    last_round_id: str | None = None
    resolved_round_id: str | None = None
    opened_at: datetime
    resolved_at: datetime | None = None
    acknowledged: bool = False


class AlertEvent(Strict):
    """What an alert sink is told: an incident opened or resolved (or a test), with the
    finding's evidence (reference and provider answers side by side) when it opened."""

    type: Literal["incident.opened", "incident.resolved", "test"]
    incident: IncidentInfo | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    round_id: str | None = None
