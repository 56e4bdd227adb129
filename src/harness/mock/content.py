"""The deterministic reply and token rule (contract section 1, "Deterministic content").

Pure functions over already-validated request fields, so tests can compute the exact reply and
usage the mock (and, through it, the proxy) must return for any request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Content-part types carrying text: chat uses "text"; Responses input uses "input_text" and replays
# earlier assistant turns as "output_text". Accepting all three on both APIs keeps token counts
# identical when the proxy translates one API onto the other.
TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})

# A conversation turn as the token rule sees it: (role, text).
Turn = tuple[str, str]


@dataclass(frozen=True)
class Reply:
    words: tuple[str, ...]
    truncated: bool
    input_tokens: int

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        return len(self.words)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def words(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """Text of a message's `content`: the string itself, or its text parts joined by spaces.

    Joining with a space keeps `words(content_text(c))` equal to the sum of the parts' words.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            # A client may send any JSON as a part's type; only strings can name a text part.
            and isinstance(part.get("type"), str)
            and part["type"] in TEXT_PART_TYPES
            and isinstance(part.get("text"), str)
        )
    return ""


def chat_turns(messages: Sequence[Any]) -> list[Turn]:
    return [
        (str(message.get("role", "")), content_text(message.get("content")))
        for message in messages
        if isinstance(message, dict)
    ]


def responses_turns(input_value: str | Sequence[Any]) -> list[Turn]:
    """Message items of a Responses `input`; items without message content (function call
    outputs, reasoning, item references) carry no text under the token rule."""
    if isinstance(input_value, str):
        return [("user", input_value)]
    return [
        (str(item.get("role", "")), content_text(item.get("content")))
        for item in input_value
        if isinstance(item, dict) and item.get("type", "message") == "message"
    ]


def compose_reply(turns: Sequence[Turn], limit: int | None, extra_input: str = "") -> Reply:
    """The reply to a conversation; `extra_input` is text that counts as input but is not a
    turn (Responses `instructions`).

    The reply is rebuilt from its words, so irregular whitespace in the user's text is
    normalised to single spaces: that is what makes the concatenated stream deltas equal the
    non-streaming content exactly.
    """
    turn = 0
    last_user_text = ""
    input_tokens = words(extra_input)
    for role, text in turns:
        input_tokens += words(text)
        if role == "user":
            turn += 1
            last_user_text = text
    reply_words = f"reply {turn}: {last_user_text}".split()
    truncated = limit is not None and limit < len(reply_words)
    if truncated:
        reply_words = reply_words[:limit]
    return Reply(words=tuple(reply_words), truncated=truncated, input_tokens=input_tokens)


def stream_deltas(reply_words: Sequence[str]) -> list[str]:
    return [word if index == 0 else " " + word for index, word in enumerate(reply_words)]
