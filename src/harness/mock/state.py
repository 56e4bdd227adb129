"""What the mock remembers: the request log, per-tag counts, and the responses it produced."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.mock.content import Entry

SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "cookie", "proxy-authorization"}
)
LOG_CAPACITY = 10_000
RESPONSE_STORE_CAPACITY = 10_000
COUNTED_KINDS = ("chat", "responses", "models")


def redact(value: str) -> str:
    """A stand-in that never reveals the secret but lets a test check which key was sent."""
    return "<redacted sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12] + ">"


def loggable_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    logged: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in SECRET_HEADERS:
            value = redact(value)
        # Repeated headers are one comma-separated header in HTTP semantics.
        logged[name] = logged[name] + ", " + value if name in logged else value
    return logged


def _selected(
    entry_upstream: str, entry_tag: str | None, upstream: str | None, tag: str | None
) -> bool:
    return (upstream is None or entry_upstream == upstream) and (tag is None or entry_tag == tag)


class RequestLog:
    """Ring buffer of the last requests to upstreams, oldest first.

    An entry is recorded when the request arrives, with `status` and `outcome` null, and is
    completed in place when the mock has answered, faulted or seen the client leave.
    """

    def __init__(self, capacity: int = LOG_CAPACITY) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        # Sequence numbers survive resets so a test can use them as a cursor.
        self._seq = itertools.count(1)

    def record(
        self,
        *,
        upstream: str,
        method: str,
        path: str,
        tag: str | None,
        headers: dict[str, str],
    ) -> dict[str, Any]:
        entry = {
            "seq": next(self._seq),
            "time": time.time(),
            "upstream": upstream,
            "method": method,
            "path": path,
            "model": None,
            "tag": tag,
            "stream": False,
            "headers": headers,
            "body": None,
            "status": None,
            "outcome": None,
            "sent_bytes": 0,
        }
        self._entries.append(entry)
        return entry

    def query(
        self, upstream: str | None, tag: str | None, limit: int | None
    ) -> list[dict[str, Any]]:
        entries = [
            entry
            for entry in self._entries
            if _selected(entry["upstream"], entry["tag"], upstream, tag)
        ]
        return entries[-limit:] if limit is not None else entries

    def remove(self, upstream: str | None, tag: str | None) -> None:
        kept = [
            entry
            for entry in self._entries
            if not _selected(entry["upstream"], entry["tag"], upstream, tag)
        ]
        self._entries = deque(kept, maxlen=self._entries.maxlen)


class Counts:
    """Requests per (tag, upstream, kind); kind is chat, responses, models or other."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str | None, str], dict[str, int]] = {}

    def add(self, tag: str | None, upstream: str, kind: str) -> None:
        kinds = self._counts.get((tag, upstream))
        if kinds is None:
            kinds = self._counts[(tag, upstream)] = dict.fromkeys(COUNTED_KINDS, 0)
        kinds[kind] = kinds.get(kind, 0) + 1

    def summary(self, tag: str | None) -> dict[str, Any]:
        upstreams: dict[str, dict[str, int]] = {}
        for (entry_tag, upstream), kinds in self._counts.items():
            if tag is not None and entry_tag != tag:
                continue
            totals = upstreams.setdefault(upstream, dict.fromkeys(("total", *COUNTED_KINDS), 0))
            for kind, count in kinds.items():
                totals["total"] += count
                if kind in COUNTED_KINDS:
                    totals[kind] += count
        return {
            "total": sum(totals["total"] for totals in upstreams.values()),
            "upstreams": upstreams,
        }

    def remove(self, upstream: str | None, tag: str | None) -> None:
        self._counts = {
            key: kinds
            for key, kinds in self._counts.items()
            if not _selected(key[1], key[0], upstream, tag)
        }


class ResponseStore:
    """The responses the mock produced, as `responses.retrieve` and `input_items.list` read
    them, the conversations behind them, for `previous_response_id`, and their output items
    by id, for `item_reference` input items.

    A conversation keeps whole entries (messages, refusals as their text, function calls with
    their `call_id`), so a later `function_call_output` can answer a call of an earlier
    response. Keyed by upstream as well as id: each named upstream stands for a separate
    server, which cannot know the responses another one produced.
    """

    def __init__(self, capacity: int = RESPONSE_STORE_CAPACITY) -> None:
        self._capacity = capacity
        self._stored: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()
        # (upstream, item id) -> the item's entries.
        self._items: dict[tuple[str, str], tuple[Entry, ...]] = {}

    def put(self, upstream: str, response_id: str, stored: StoredResponse) -> None:
        key = (upstream, response_id)
        self._stored[key] = stored
        for item_id, entries in stored.items.items():
            self._items[(upstream, item_id)] = entries
        if len(self._stored) > self._capacity:
            self._forget(*self._stored.popitem(last=False))

    def get(self, upstream: str, response_id: str) -> tuple[Entry, ...] | None:
        stored = self._stored.get((upstream, response_id))
        return stored.conversation if stored else None

    def response(self, upstream: str, response_id: str) -> StoredResponse | None:
        return self._stored.get((upstream, response_id))

    def delete(self, upstream: str, response_id: str) -> bool:
        stored = self._stored.pop((upstream, response_id), None)
        if stored is not None:
            self._forget((upstream, response_id), stored)
        return stored is not None

    def item(self, upstream: str, item_id: str) -> tuple[Entry, ...] | None:
        return self._items.get((upstream, item_id))

    def _forget(self, key: tuple[str, str], stored: StoredResponse) -> None:
        for item_id in stored.items:
            self._items.pop((key[0], item_id), None)


@dataclass(frozen=True)
class StoredResponse:
    """One response as the API keeps it: the object, its input items (each with an id), the
    conversation up to and including its turn, and the entries of each output item by id."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: tuple[Entry, ...]
    items: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
