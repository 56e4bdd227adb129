"""The answer rule and the token rule (contract section 1, "Deterministic content" and "Answer
rules").

Pure functions over an already-validated conversation (`Entry` items, from either API) and the
request's options, so tests can compute the exact answer and usage the mock (and, through it,
the proxy) must return for any request.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.mock.schema import instance

# Content-part types carrying text: chat uses "text"; Responses input uses "input_text" and replays
# earlier assistant turns as "output_text". Accepting all three on both APIs keeps token counts
# identical when the proxy translates one API onto the other. A refusal part carries its text in
# `refusal`: it counts as the assistant's words, as a refusal the mock stored does.
TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
REFUSAL_PART_TYPE = "refusal"

REFUSE_WORD = re.compile(r"\brefuse\b", re.IGNORECASE)
EXPLAIN_WORD = re.compile(r"\bexplain\b", re.IGNORECASE)
# The most characters of a call's arguments one stream event carries.
ARGUMENTS_FRAGMENT = 8
# The most alternatives `top_logprobs` asks for, on both APIs.
MAX_TOP_LOGPROBS = 20
# Reasoning models, by the end of their name, as vLLM-style servers with a reasoning parser
# serve them: chat answers carry the reasoning in this message (and delta) field.
# `reasoning_content` is DeepSeek's field and vLLM's before 0.10; `reasoning` vLLM's since.
REASONING_MODELS = {"-reasoner": "reasoning_content", "-reasoning": "reasoning"}


@dataclass(frozen=True)
class Message:
    """A message of the conversation: its role and its text (a refusal's text included)."""

    role: str
    text: str


@dataclass(frozen=True)
class ToolCall:
    """A function call the assistant made (chat `tool_calls` entry, Responses `function_call`);
    `item_id` is the Responses item's id (`fc_...`), empty on chat."""

    call_id: str
    name: str
    arguments: str
    item_id: str = ""


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer (chat `tool` message, Responses `function_call_output`)."""

    call_id: str
    output: str


Entry = Message | ToolCall | ToolResult


@dataclass(frozen=True)
class Function:
    name: str
    parameters: Any


@dataclass(frozen=True)
class Options:
    """What of a request shapes the answer, besides the conversation.

    `choice`: "none", "auto" or "required"; `forced`: the one function a named tool_choice
    calls. `output`: "text", "json_object" or "json_schema" (with `schema`). `extra_input`:
    text that counts as input but is no turn (Responses `instructions`). `top_logprobs`: the
    alternatives each token's logprob comes with, None when no logprobs are asked for.
    `reasoning`: the chat field a reasoning model's reasoning goes in (`reasoning_field`),
    None for other models."""

    functions: tuple[Function, ...] = ()
    choice: str = "auto"
    forced: str | None = None
    parallel: bool = True
    output: str = "text"
    schema: Any = None
    limit: int | None = None
    extra_input: str = ""
    top_logprobs: int | None = None
    reasoning: str | None = None


def reasoning_field(model: Any) -> str | None:
    """The chat field a reasoning model answers its reasoning in; None for other models."""
    if not isinstance(model, str):
        return None
    return next((f for end, f in REASONING_MODELS.items() if model.endswith(end)), None)


def random_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


@dataclass(frozen=True)
class Answer:
    """The assistant's turn: a reasoning model's reasoning, text (or a refusal), then
    function calls; and the logprobs it is sent with (`top_logprobs`, None: none)."""

    words: tuple[str, ...]
    truncated: bool
    input_tokens: int
    refusal: bool = False
    calls: tuple[ToolCall, ...] = field(default=())
    reasoning: tuple[str, ...] = ()
    reasoning_field: str = "reasoning_content"
    top_logprobs: int | None = None

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def reasoning_text(self) -> str:
        return " ".join(self.reasoning)

    @property
    def reasoning_tokens(self) -> int:
        return len(self.reasoning)

    @property
    def output_tokens(self) -> int:
        return (
            len(self.reasoning)
            + len(self.words)
            + sum(words(call.arguments) for call in self.calls)
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def entries(self) -> tuple[Entry, ...]:
        """The answer as conversation entries (what `previous_response_id` continues)."""
        message: tuple[Entry, ...] = (Message("assistant", self.text),) if self.words else ()
        return (*message, *self.calls)


def words(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """Text of a message's `content`: the string itself, or its text (and refusal) parts
    joined by spaces.

    Joining with a space keeps `words(content_text(c))` equal to the sum of the parts' words.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        # A client may send any JSON as a part's type; only strings can name a text part.
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            continue
        key = "text" if kind in TEXT_PART_TYPES else "refusal" if kind == REFUSAL_PART_TYPE else ""
        if key and isinstance(part.get(key), str):
            texts.append(part[key])
    return " ".join(texts)


def input_tokens(conversation: Sequence[Entry], extra_input: str = "") -> int:
    """Words of every message, tool result and call arguments, and of `extra_input`."""
    total = words(extra_input)
    for entry in conversation:
        if isinstance(entry, Message):
            total += words(entry.text)
        elif isinstance(entry, ToolCall):
            total += words(entry.arguments)
        else:
            total += words(entry.output)
    return total


def user_turns(conversation: Sequence[Entry]) -> tuple[int, str]:
    """N (the number of user messages) and the last user text ("" if none)."""
    users = [e.text for e in conversation if isinstance(e, Message) and e.role == "user"]
    return len(users), users[-1] if users else ""


def trailing_tool_outputs(conversation: Sequence[Entry]) -> list[str]:
    outputs: list[str] = []
    for entry in reversed(conversation):
        if not isinstance(entry, ToolResult):
            break
        outputs.insert(0, entry.output)
    return outputs


def called_functions(options: Options, last_user_text: str) -> list[Function]:
    """Rule 3: the functions the answer calls, in `tools` order."""
    if options.choice == "none" or not options.functions:
        return []
    if options.forced is not None:
        chosen = [f for f in options.functions if f.name == options.forced][:1]
    else:
        chosen = [f for f in options.functions if f.name in last_user_text]
        if not chosen and options.choice == "required":
            chosen = [options.functions[0]]
    return chosen[:1] if not options.parallel else chosen


def arguments_of(function: Function) -> str:
    """Arguments generated from the function's parameters (none given: an empty object)."""
    parameters = function.parameters
    if parameters is None or parameters == {}:
        parameters = {"type": "object", "properties": {}}
    return json.dumps(instance(parameters))


def decide(
    conversation: Sequence[Entry],
    options: Options,
    make_id: Callable[[str], str] = random_id,
) -> Answer:
    """The answer to a conversation, by the first rule that applies (contract section 1).

    The text is rebuilt from its words, so irregular whitespace in the user's text is
    normalised to single spaces: that is what makes the concatenated stream deltas equal the
    non-streaming content exactly. A reasoning model reasons `reasoning N: <last user text>`
    first, whatever the rule; the token limit cuts the answer, never the reasoning.
    """
    answer = answer_rule(conversation, options, make_id)
    extras: dict[str, Any] = {"top_logprobs": options.top_logprobs}
    if options.reasoning is not None:
        turn, last_user_text = user_turns(conversation)
        extras["reasoning"] = tuple(f"reasoning {turn}: {last_user_text}".split())
        extras["reasoning_field"] = options.reasoning
    return dataclasses.replace(answer, **extras)


def answer_rule(
    conversation: Sequence[Entry], options: Options, make_id: Callable[[str], str]
) -> Answer:
    """The answer rules, first match wins."""
    turn, last_user_text = user_turns(conversation)
    tokens = input_tokens(conversation, options.extra_input)
    outputs = trailing_tool_outputs(conversation)
    if outputs:
        text = f"reply {turn}: tool said " + " ".join(outputs)
    else:
        if REFUSE_WORD.search(last_user_text):
            refusal = f"I refuse: {last_user_text}".split()
            return Answer(tuple(refusal), truncated=False, input_tokens=tokens, refusal=True)
        functions = called_functions(options, last_user_text)
        if functions:
            calls = tuple(
                ToolCall(make_id("call_"), f.name, arguments_of(f), make_id("fc_"))
                for f in functions
            )
            before = " ".join(["calling", *(f.name for f in functions)])
            said = before if EXPLAIN_WORD.search(last_user_text) else ""
            cut, truncated = limited(said.split(), options.limit)
            return Answer(cut, truncated=truncated, input_tokens=tokens, calls=calls)
        text = f"reply {turn}: {last_user_text}"
    if options.output == "json_schema":
        text = json.dumps(instance(options.schema))
    elif options.output == "json_object":
        text = json.dumps({"reply": " ".join(text.split())})
    cut, truncated = limited(text.split(), options.limit)
    return Answer(cut, truncated=truncated, input_tokens=tokens)


def limited(all_words: Sequence[str], limit: int | None) -> tuple[tuple[str, ...], bool]:
    """The first `limit` words, and whether that cut any."""
    if limit is not None and limit < len(all_words):
        return tuple(all_words[:limit]), True
    return tuple(all_words), False


def stream_deltas(reply_words: Sequence[str]) -> list[str]:
    """The tokens of a text: its words, each after the first with its space."""
    return [word if index == 0 else " " + word for index, word in enumerate(reply_words)]


def token_logprob(token: str) -> float:
    """The logprob of a token the mock answers: -1/8 to -7/8 by its length (exact in binary,
    so a float survives JSON unchanged)."""
    return -(len(token) % 7 + 1) / 8


def token_logprobs(tokens: Sequence[str], top: int) -> list[dict[str, Any]]:
    """Chat's `logprobs.content` entries for `tokens`: each token's logprob and bytes, and its
    `top` most likely alternatives, the token itself first, each next one 1 less likely."""
    entries = []
    for token in tokens:
        chosen = token_logprob(token)
        alternatives = [token, *(f"{token}#{k}" for k in range(1, top))][:top]
        entries.append(
            {
                "token": token,
                "logprob": chosen,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": other, "logprob": chosen - k, "bytes": list(other.encode())}
                    for k, other in enumerate(alternatives)
                ],
            }
        )
    return entries


def fragments(arguments: str, size: int = ARGUMENTS_FRAGMENT) -> list[str]:
    """A call's arguments in stream pieces of at most `size` characters."""
    return [arguments[start : start + size] for start in range(0, len(arguments), size)]
