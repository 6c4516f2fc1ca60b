"""Tool calling in the fleet: offered to the model as the reference engine offers it, and
broken the way real hosts break it.

A chat request with `tools` (or with tool turns in its history) is rewritten into plain
system/user/assistant turns by `auditor.providers.tool_prompt.with_tools` after the request
faults have acted on it, so any backend sees an ordinary conversation; the answer's text is
then parsed back into OpenAI tool calls (`tool_answer`). The reference engine does the same
with the same functions, so an honest member and the reference give identical records.

Two faults act here, on a fraction `strength` of the requests that offer tools (default
all):

- `tool_parser_raw`: the host does not parse tool calls. The model's `<tool_call>...` text
  comes back as plain content, with finish_reason `stop` (a server started without its tool
  parser, or with the wrong one for the model, does this).
- `tool_args_corrupt`: calls are parsed, but each call's `arguments` lose their last
  character, so they are no longer JSON (a parser that drops the last token of a call, as
  streamed parsers have done).

A third, `stream_tools_differ`, acts on streamed requests that offer tools only: the calls
are parsed as usual, but the argument deltas of the stream, assembled as OpenAI clients
assemble them, lose their last character, while the same request answered whole keeps it
(a streaming tool parser that differs from the non-streaming one, as vLLM's have).
"""

from __future__ import annotations

import random

from auditor.providers.tool_prompt import needs_rendering, offers_tools, tool_answer, with_tools
from auditor_fleet.backends import ChatMessage, ChatRequest, Generation
from auditor_fleet.spec import FleetMember

#: The faults this module plants.
TOOL_FAULTS = frozenset({"tool_parser_raw", "tool_args_corrupt"})


def corrupt_arguments(arguments: str) -> str:
    """`arguments` with the last character dropped: `{"a": 1}` becomes `{"a": 1`."""
    return arguments[:-1] if len(arguments) > 1 else "{"


class ToolHandling:
    """One member's handling of tools: the rendering, the parsing and its tool fault."""

    def __init__(self, member: FleetMember, seed: int) -> None:
        self.fault = member.fault if member.fault in TOOL_FAULTS else None
        self.share = member.effective_strength()
        self.rng = random.Random(f"{seed}/{member.name}/tools")
        self.stream_share = self.share if member.fault == "stream_tools_differ" else 0.0
        self.stream_rng = random.Random(f"{seed}/{member.name}/stream-tools")

    @staticmethod
    def offered(chat: ChatRequest) -> bool:
        return offers_tools(chat.tool_choice, chat.tools)

    @staticmethod
    def prepare(chat: ChatRequest) -> ChatRequest:
        """The request as the model sees it: tools and tool turns as plain turns."""
        messages = [m.model_dump(exclude_none=True) for m in chat.messages]
        if not needs_rendering(messages, chat.tools, chat.tool_choice):
            return chat
        rendered = with_tools(messages, chat.tools, chat.tool_choice)
        return chat.model_copy(update={"messages": [ChatMessage(**m) for m in rendered]})

    def finish(self, chat: ChatRequest, generation: Generation) -> Generation:
        """The answer to `chat` as this member sends it: tool calls parsed (or not)."""
        if not self.offered(chat):
            return generation
        broken = self.fault is not None and self.rng.random() < self.share
        if broken and self.fault == "tool_parser_raw":
            return generation
        content, calls, finish = tool_answer(
            generation.text, generation.finish_reason, chat.tool_choice
        )
        if calls and broken and self.fault == "tool_args_corrupt":
            for call in calls:
                call["function"]["arguments"] = corrupt_arguments(call["function"]["arguments"])
        return generation.model_copy(
            update={"text": content or "", "tool_calls": calls, "finish_reason": finish}
        )

    def breaks_stream(self, chat: ChatRequest) -> bool:
        """Whether this streamed answer's tool-call deltas lose their arguments' last
        character (`stream_tools_differ`); drawn for streamed requests offering tools only."""
        if not (self.stream_share and chat.stream and self.offered(chat)):
            return False
        return self.stream_rng.random() < self.stream_share
