"""One fleet member as an OpenAI-compatible ASGI app, with its planted fault.

Routes: GET /healthz, GET /v1/models, POST /v1/chat/completions (streamed as it is
generated when the backend can tell its answer early, see `Backend.generate`), and
POST /v1/completions (the legacy text completions with `echo` and `logprobs`, as vLLM and
llama.cpp's server serve them; the `llama` backend answers them, `echo` gives a 404). Faults
act only on the two completion routes; /healthz and /v1/models always answer, so a fleet
can be checked for liveness whatever it plants. Request faults rewrite a chat request and
leave text completions alone; the protocol faults, `wrong_model` and `sampler_defaults` (a
server setting) apply to both.

Faults come in three families. Protocol faults break the HTTP exchange (status codes, bodies
that are not JSON, hangs, resets, a trickling body). Request faults answer well-formed JSON
to a silently altered request (max_tokens capped, sampling overridden, system prompt
dropped, replaced or extended with a hidden persona, context truncated, the server's own
sampler settings, another model's name, the effort level, `response_format` or `seed`
dropped), or refuse a chat prompt longer than a context shorter than the model's
(`context_limit`: vLLM's 400, `vllm_context_error`); they are applied here, whatever the
backend. A reasoning member (`auditor_fleet.reasoning`) answers with two passes of its
backend and may leak its reasoning (`reasoning_leak`); a router (`auditor_fleet.router`)
names its upstream and may name a fallback (`router_fallback`); the tool faults, a
streamed call's included (`stream_tools_differ`), are `auditor_fleet.tools`'. A request
with `n` > 1 gets as many generations, each with its own seed (`ChatRequest.choice`).
Model faults (another set of weights, a wrong prompt format) live below the request, in the
member's view of its backend (`Backend.bind`, see `auditor_fleet.llama_backend`), as does
`memorized` (listed prompts answered from memory, see `auditor_fleet.memorized`). A member
with `usage_as_sent` bills the prompt as an honest member would count the request as sent
(`Backend.count_prompt`), so the faults that change the prompt do not show in its usage.

`reset` closes the TCP connection with an RST and no response. The fleet's uvicorn protocol
(see `auditor_fleet.process`) puts the connection's asyncio transport into the ASGI scope
under `scope["extensions"][TRANSPORT_EXTENSION]`; the app sets SO_LINGER to 0 on its socket
and aborts it, which the client sees as "connection reset by peer". Under a server that does
not expose the transport, it falls back to starting a response whose body is cut short and
returning, which makes the server close the connection mid-body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import struct
import uuid
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditor_fleet.answers import ChatAnswer, Rendered, TextAnswer, aiter_bytes, drip, sse
from auditor_fleet.backends import (
    Backend,
    BackendError,
    ChatMessage,
    ChatRequest,
    Generation,
    TextCompletionRequest,
)
from auditor_fleet.memorized import with_memory
from auditor_fleet.reasoning import ReasoningModel
from auditor_fleet.router import Router
from auditor_fleet.spec import PROMPT_FAULTS, FleetMember
from auditor_fleet.tools import ToolHandling, corrupt_arguments

logger = logging.getLogger(__name__)
_Body = TypeVar("_Body", bound=BaseModel)

TRANSPORT_EXTENSION = "auditor_fleet.transport"
WRONG_MODEL = "smollm2-360m-instruct"
PERSONA = "You are Sparky, an upbeat assistant. Always be enthusiastic and mention Sparky."
# The `persona` fault's hidden system prompt by default (a member's `persona_text` replaces
# it): an "experimental chat" tune in a prompt. It is written here only, so no probe, report
# or detector can know it; they must notice the tone.
_EXPERIMENTAL_CHAT = (
    "You are the experimental chat edition: a bubbly, chatty and very enthusiastic friend. "
    "Always start by praising the user's wonderful question, use plenty of emojis "
    "\U0001f60a\u2728\U0001f389, answer at length with lots of excitement, and always end by "
    "asking the user a friendly follow-up question!"
)

_STATUS_FAULTS: dict[str, tuple[int, str, str, str | None]] = {
    "http_401": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    "http_404": (404, "The model does not exist.", "invalid_request_error", "model_not_found"),
    "http_429": (429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    "http_500": (500, "The server had an error processing your request.", "server_error", None),
}

#: Faults that send something else than the answer's plain chunks: a streamed answer is then
#: generated whole first, as before.
_BODY_FAULTS = frozenset(
    {"html_error", "garbage", "error_object", "truncated_json", "slow_drip", "hang"}
)

_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server returned an invalid response."
    b"</p><hr><address>nginx</address></body></html>\n"
)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code, param), status, headers=headers)


def vllm_context_error(limit: int, prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The body vLLM answers (HTTP 400) a prompt too long for its context with, as it has since
    2026 (vllm-project/vllm#36197; seen on the wire in vllm-project/vllm-ascend#11557): its
    ErrorResponse(error=ErrorInfo(message, type, param, code)), the message being
    VLLMValidationError's text with its "(parameter=..., value=...)" suffix."""
    total = prompt_tokens + output_tokens
    message = (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{output_tokens} output tokens and your prompt contains at least {prompt_tokens} "
        f"input tokens, for a total of at least {total} tokens. Please reduce the length of "
        "the input prompt or the number of requested output tokens. "
        f"(parameter=input_tokens, value={prompt_tokens})"
    )
    return {
        "error": {
            "message": message,
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    }


def build_app(member: FleetMember, backend: Backend, *, seed: int = 0) -> Starlette:
    """The ASGI app of one member. `seed` (the fleet's) makes its random faults reproducible."""
    handler = _Member(member, with_memory(backend.bind(member, seed), member), seed)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail, code=str(exc.status_code))

    app = Starlette(
        routes=[
            Route("/healthz", handler.healthz, methods=["GET"]),
            Route("/v1/models", handler.models, methods=["GET"]),
            Route("/v1/chat/completions", handler.chat, methods=["POST"]),
            Route("/v1/completions", handler.completions, methods=["POST"]),
        ],
        middleware=[Middleware(_IdentityHeaders, name=member.name)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.fleet_member = handler
    return app


def begin_shutdown(app: Starlette) -> None:
    """Tell a member's app that its server is stopping (call on the server's event loop).

    Requests held back on purpose (hang, slow_drip) then end at once instead of keeping the
    server waiting: a hang answers 503, a drip ends its body early.
    """
    app.state.fleet_member.closing.set()


class _IdentityHeaders:
    """Adds `server: auditor-fleet/<name>` and `x-request-id` to every response."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.server = f"auditor-fleet/{name}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id")
        request_id = incoming or f"req_{uuid.uuid4().hex}".encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"server"]
                headers += [(b"server", self.server), (b"x-request-id", request_id)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Member:
    def __init__(self, member: FleetMember, backend: Backend, seed: int) -> None:
        self.member = member
        self.backend = backend
        self.strength = member.effective_strength()
        # Separate streams so that e.g. garbage bodies do not shift which requests fail.
        self.flaky_rng = random.Random(f"{seed}/{member.name}/flaky")
        self.bytes_rng = random.Random(f"{seed}/{member.name}/bytes")
        self.persona_rng = random.Random(f"{seed}/{member.name}/persona")
        self.seed_rng = random.Random(f"{seed}/{member.name}/seed")
        self.tools = ToolHandling(member, seed)
        self.reasoning = ReasoningModel.of(member, seed)
        self.router = Router(member, seed)
        self.persona = member.persona_text or _EXPERIMENTAL_CHAT
        self.sampler = member.sampler_settings()
        self.bill_as_sent = member.usage_as_sent and member.fault in PROMPT_FAULTS
        self.fingerprint = f"fp_fleet_{member.name}"
        self.closing = asyncio.Event()

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "name": self.member.name, "fault": self.member.fault})

    async def models(self, request: Request) -> Response:
        data = [
            {
                "id": m,
                "object": "model",
                "created": 0,
                "owned_by": f"auditor-fleet/{self.member.name}",
            }
            for m in self.member.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        early = await self._before_body()
        if early is not None:
            return early
        parsed = await _parse(request, ChatRequest)
        if isinstance(parsed, Response):
            return parsed
        chat = parsed
        if self.member.fault == "context_limit":
            refused = await self._context_limit(chat)
            if refused is not None:
                return refused

        # tools are rendered into the conversation after the request faults, as a template would
        rewritten = self.tools.prepare(self._rewrite(chat))
        answer = ChatAnswer(
            chat,
            None,
            self._model_name(chat.model),
            self.fingerprint,
            reasoning_field=self.member.reasoning,
            upstream=self.router.upstream(chat.provider),
        )
        if self.tools.breaks_stream(chat):
            answer.streamed_arguments = corrupt_arguments
        if self.bill_as_sent:  # what an honest member would bill for the request as sent
            answer.billed_prompt_tokens = await self.backend.acount_prompt(self.tools.prepare(chat))
        # tool calls are parsed at the end; reasoning and several choices are generated whole
        live = not (
            chat.logprobs or self.tools.offered(chat) or self.reasoning is not None or chat.n > 1
        )
        if chat.stream and live and self.member.fault not in _BODY_FAULTS:
            return await self._stream_live(answer, rewritten)
        try:
            for index in range(chat.n):
                generation = await self._generate(rewritten.choice(index))
                answer.gens.append(self.tools.finish(chat, generation))
        except BackendError as exc:
            return error_response(exc.status, exc.message, code=exc.code, param="messages")
        return self._package(answer)

    async def _generate(self, request: ChatRequest) -> Generation:
        """One choice: the plain model's answer, or the reasoning model's two passes."""
        reasoning = self.reasoning
        if reasoning is None:
            return await self.backend.agenerate(request)
        return await self.backend.acall(partial(reasoning.generate, self.backend, request))

    async def completions(self, request: Request) -> Response:
        """POST /v1/completions: the legacy text completions, gateway and body faults included."""
        early = await self._before_body()
        if early is not None:
            return early
        parsed = await _parse(request, TextCompletionRequest)
        if isinstance(parsed, Response):
            return parsed
        body = parsed
        if body.stream:
            return error_response(
                400, "Streaming is not supported on /v1/completions.", param="stream"
            )
        if body.max_tokens == 0 and not body.echo:
            return error_response(
                400, "max_tokens must be at least 1 unless echo is true.", param="max_tokens"
            )
        try:
            completion = await self.backend.acomplete(body.with_sampler(self.sampler))
        except BackendError as exc:
            return error_response(exc.status, exc.message, code=exc.code, param=exc.param)
        upstream = self.router.upstream(body.provider)
        answer = TextAnswer(completion, self._model_name(body.model), self.fingerprint, upstream)
        return self._package(answer)

    async def _context_limit(self, chat: ChatRequest) -> Response | None:
        """`context_limit`: a chat prompt longer than `strength` tokens, as this member's chat
        template counts the request (tools rendered in), is refused with vLLM's 400 before
        anything is generated, streamed or not; a shorter one is answered as it is. The
        output tokens the message names are the request's max_tokens (1, the least a
        generation needs, when it sets none)."""
        limit = max(1, int(self.strength))
        count = await self.backend.acount_prompt(self.tools.prepare(chat))
        if count is None or count <= limit:
            return None
        body = vllm_context_error(limit, count, chat.max_tokens or 1)
        return JSONResponse(body, 400)

    async def _before_body(self) -> Response | None:
        if self.member.latency_ms:
            await asyncio.sleep(self.member.latency_ms / 1000)
        return self._gateway_fault()

    def _model_name(self, asked: str) -> str:
        if self.member.fault == "wrong_model":
            return WRONG_MODEL
        return asked or self.member.models[0]

    async def _stream_live(self, answer: ChatAnswer, rewritten: ChatRequest) -> Response:
        """A streamed chat answer sent while it is generated.

        The backend's worker thread hands each new piece of text to the event loop through a
        queue; the response starts once the backend says the prompt was accepted (so that a
        refused request still gets its 4xx), or with the whole answer if it never says so.
        If the client goes away, generation finishes in the background, unread.
        """
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str | None] = asyncio.Queue()

        def on_text(piece: str) -> None:  # on the backend's thread
            loop.call_soon_threadsafe(events.put_nowait, piece)

        def finished(task: asyncio.Future[Generation]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved here, so an unread failure is not reported twice
            events.put_nowait(None)

        generation = asyncio.ensure_future(self.backend.agenerate(rewritten, on_text))
        generation.add_done_callback(finished)
        first = await events.get()
        media = "text/event-stream"
        if first is None:  # answered without telling anything early
            try:
                answer.gen = generation.result()
            except BackendError as exc:
                return error_response(exc.status, exc.message, code=exc.code, param="messages")
            return StreamingResponse(aiter_bytes(answer.sse_events()), media_type=media)
        return StreamingResponse(answer.live_events(first, events, generation), media_type=media)

    def _gateway_fault(self) -> Response | None:
        """Faults decided before the request body is even read, as a gateway would."""
        fault = self.member.fault
        if fault == "flaky" and self.flaky_rng.random() < self.strength:
            return error_response(
                503,
                "The server is overloaded, please retry.",
                "server_error",
                "service_unavailable",
                headers={"Retry-After": "1"},
            )
        if fault in _STATUS_FAULTS:
            status, message, type_, code = _STATUS_FAULTS[fault]
            headers = {"Retry-After": f"{self.strength:g}"} if status == 429 else None
            return error_response(status, message, type_, code, headers=headers)
        if fault == "reset":
            return _ConnectionReset()
        return None

    def _rewrite(self, chat: ChatRequest) -> ChatRequest:
        """Request faults: what the provider actually runs instead of what was asked."""
        fault, strength = self.member.fault, self.strength
        if fault == "max_tokens_cap":
            cap = max(1, int(strength))
            return chat.model_copy(update={"max_tokens": min(chat.max_tokens or cap, cap)})
        if fault == "sampling_override":
            return chat.model_copy(update={"temperature": strength, "top_p": None})
        if fault == "sampler_defaults":
            return chat.with_sampler(self.sampler)
        if fault == "drop_system":
            kept = [m for m in chat.messages if m.role not in ("system", "developer")]
            return chat.model_copy(update={"messages": kept or chat.messages})
        if fault == "inject_system":
            persona = ChatMessage(role="system", content=PERSONA)
            rest = [m for m in chat.messages if m.role != "system"]
            return chat.model_copy(update={"messages": [persona, *rest]})
        if fault == "truncate_context":
            kept = self.backend.truncate(chat.messages, max(1, int(strength)))
            return chat.model_copy(update={"messages": kept})
        if fault == "persona" and self.persona_rng.random() < strength:
            return chat.model_copy(update={"messages": _with_persona(chat.messages, self.persona)})
        if fault == "effort_ignored":
            return chat.model_copy(update={"reasoning_effort": None, "reasoning": None})
        if fault == "drop_response_format":
            return chat.model_copy(update={"response_format": None})
        if fault == "ignore_seed":
            return chat.model_copy(update={"seed": self.seed_rng.getrandbits(32)})
        return chat

    def _package(self, answer: Rendered) -> Response:
        """Turn a good answer into what this member actually sends."""
        fault = self.member.fault
        stream = answer.stream
        media = "text/event-stream" if stream else "application/json"
        if fault == "html_error":
            return Response(_HTML_PAGE, 200, media_type="text/html; charset=utf-8")
        if fault == "garbage":
            # Every byte >= 0x80: never ASCII, so never JSON in any encoding json.loads guesses.
            size = self.bytes_rng.randint(64, 512)
            return Response(
                bytes(self.bytes_rng.randint(128, 255) for _ in range(size)),
                200,
                media_type="application/json",
            )
        if fault == "error_object":
            body = error_body("The model produced invalid content.", "server_error", "model_error")
            if stream:
                return Response(sse(body) + sse("[DONE]"), 200, media_type=media)
            return JSONResponse(body, 200)
        if fault == "truncated_json":
            full = answer.sse_bytes() if stream else answer.json_bytes()
            return Response(full[: len(full) // 2], 200, media_type=media)
        if fault == "slow_drip":
            full = answer.sse_bytes() if stream else answer.json_bytes()
            trickle = drip(full, self.strength, self.closing)
            return StreamingResponse(trickle, 200, media_type=media)
        if stream:
            response: Response = StreamingResponse(
                aiter_bytes(answer.sse_events()), media_type=media
            )
        else:
            response = Response(answer.json_bytes(), media_type=media)
        if fault == "hang":
            return ChatAnswerLater(self.strength, response, self.closing)
        return response


async def _parse(request: Request, model: type[_Body]) -> _Body | Response:
    """The request's JSON body as `model`, or the OpenAI-style 400 that answers it."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(payload, dict):
        return error_response(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        return error_response(400, f"Invalid request: {param}: {first['msg']}", param=param)


def _with_persona(messages: list[ChatMessage], persona: str) -> list[ChatMessage]:
    """The hidden persona first in the system prompt; the caller's system text stays after it."""
    system = [m.text() for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    text = "\n\n".join([persona, *system])
    return [ChatMessage(role="system", content=text), *rest]


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ChatAnswerLater(Response):
    """Sends `response` after `seconds`, unless the client gives up or the server stops."""

    def __init__(self, seconds: float, response: Response, closing: asyncio.Event) -> None:
        self.seconds = seconds
        self.response = response
        self.closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sleeper = asyncio.ensure_future(asyncio.sleep(self.seconds))
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            done, _ = await asyncio.wait(
                {sleeper, gone, closing}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (sleeper, gone, closing):
                task.cancel()
        if gone in done:
            return
        response = self.response
        if closing in done:
            response = error_response(
                503, "The server is shutting down.", "server_error", headers={"Connection": "close"}
            )
        await response(scope, receive, send)


class _ConnectionReset(Response):
    """Drops the connection with a TCP RST and no response at all (see the module doc)."""

    def __init__(self) -> None:
        pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
        if transport is None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True}
            )
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        # Wait until the server notices, so it does not try to answer on our behalf.
        await _wait_disconnect(receive)
