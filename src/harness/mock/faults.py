"""Fault specs (contract section 1, "Faults"): parsing them from JSON, from the `x-mock-fault`
header and from special model names; the counter-based rules registry; and the TCP reset.
How each fault shapes a reply is up to the endpoints (`app.py`)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Parameters each fault type accepts; anything else is rejected so that a typo in a test
# ("after_chunk") fails loudly instead of silently running with the default.
FAULT_PARAMETERS: dict[str, frozenset[str]] = {
    "status": frozenset({"status", "retry_after", "retry_after_ms", "message", "echo_key"}),
    "latency": frozenset({"first_byte_ms", "between_chunks_ms"}),
    "hang": frozenset({"after_chunks"}),
    "reset": frozenset(),
    "disconnect": frozenset({"after_chunks"}),
    "malformed_chunk": frozenset({"after_chunks"}),
    "stream_error": frozenset({"after_chunks"}),
    "malformed_body": frozenset(),
    "not_sse": frozenset({"after_chunks"}),
    "truncate": frozenset({"after_chunks"}),
    "no_done": frozenset(),
    "ignore_stream": frozenset(),
    "drip": frozenset({"bytes_per_write", "delay_ms"}),
    "flood": frozenset({"chunks", "chunk_bytes"}),
}
# Faults that happen part-way through a stream, after `after_chunks` content events (`hang`
# only when it has `after_chunks`; without, it hangs before any header).
MID_STREAM_FAULTS = frozenset(
    {"disconnect", "malformed_chunk", "stream_error", "not_sse", "truncate", "hang"}
)
# Integer parameters, and the smallest value each may take.
INTEGER_PARAMETERS = {"after_chunks": 0, "bytes_per_write": 1, "chunks": 0, "chunk_bytes": 1}
RULE_SELECTORS = ("upstream", "tag", "model", "path")
# Rules without a `path` selector match only inference requests, so that a model listing (e.g. a
# health probe) cannot consume a rule meant for "the next N requests".
INFERENCE_PATHS = frozenset({"chat", "responses"})
RULE_PATHS = frozenset({"chat", "responses", "models"})

_LINGER_ABORT = struct.pack("ii", 1, 0)


class FaultSpecError(ValueError):
    """A fault spec or rule that the mock cannot run; the message says which part is wrong."""


@dataclass(frozen=True)
class Fault:
    type: str
    spec: Mapping[str, Any]

    def number(self, key: str) -> float:
        return float(self.spec.get(key, 0))

    @property
    def after_chunks(self) -> int:
        return int(self.spec.get("after_chunks", 0))

    @property
    def mid_stream(self) -> bool:
        """Cuts into a stream after `after_chunks` content events (a `hang` only with it)."""
        if self.type == "hang":
            return "after_chunks" in self.spec
        return self.type in MID_STREAM_FAULTS

    @property
    def outcome(self) -> str:
        return f"fault:{self.type}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def parse_fault(spec: Any) -> Fault:
    if not isinstance(spec, Mapping):
        raise FaultSpecError("a fault spec must be a JSON object with a `type`")
    fault_type = spec.get("type")
    if fault_type not in FAULT_PARAMETERS:
        known = ", ".join(FAULT_PARAMETERS)
        raise FaultSpecError(f"unknown fault type {fault_type!r} (known: {known})")
    unknown = set(spec) - FAULT_PARAMETERS[fault_type] - {"type"}
    if unknown:
        raise FaultSpecError(f"fault {fault_type!r} has unknown parameters: {sorted(unknown)}")
    if fault_type == "status":
        status = spec.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise FaultSpecError("fault 'status' needs an integer `status` from 400 to 599")
        if "message" in spec and not isinstance(spec["message"], str):
            raise FaultSpecError("fault 'status': `message` must be a string")
        if "echo_key" in spec and spec["echo_key"] not in (0, 1, True, False):
            raise FaultSpecError("fault 'status': `echo_key` must be a boolean")
    for key in FAULT_PARAMETERS[fault_type] - {"status", "message", "echo_key"}:
        if key in spec and not _is_number(spec[key]):
            raise FaultSpecError(f"fault {fault_type!r}: `{key}` must be a number >= 0")
    for key, least in INTEGER_PARAMETERS.items():
        value = spec.get(key, least)
        if not isinstance(value, int) or value < least:
            raise FaultSpecError(f"fault {fault_type!r}: `{key}` must be an integer >= {least}")
    return Fault(fault_type, dict(spec))


def _header_value(raw: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def parse_fault_header(header: str) -> Fault:
    """`type=status;status=500;retry_after=1`: `;`-separated `key=value`, numbers as numbers."""
    spec: dict[str, Any] = {}
    for field in header.split(";"):
        if not field.strip():
            continue
        key, separator, value = field.partition("=")
        if not separator:
            raise FaultSpecError(f"x-mock-fault: expected key=value, got {field.strip()!r}")
        key = key.strip()
        spec[key] = value.strip() if key in {"type", "message"} else _header_value(value.strip())
    return parse_fault(spec)


MODEL_FAULTS: dict[str, Fault] = {
    name: parse_fault(spec)
    for name, spec in {
        "fault-429": {"type": "status", "status": 429},
        "fault-500": {"type": "status", "status": 500},
        "fault-503": {"type": "status", "status": 503},
        "fault-hang": {"type": "hang"},
        "fault-reset": {"type": "reset"},
        "fault-slow": {"type": "latency", "first_byte_ms": 200, "between_chunks_ms": 20},
        "fault-disconnect": {"type": "disconnect", "after_chunks": 2},
        "fault-malformed": {"type": "malformed_chunk", "after_chunks": 2},
        "fault-stream-error": {"type": "stream_error", "after_chunks": 2},
    }.items()
}


@dataclass
class FaultRule:
    id: str
    fault: Fault
    remaining: int
    selectors: dict[str, str]

    def matches(self, request: Mapping[str, str | None]) -> bool:
        if "path" not in self.selectors and request["path"] not in INFERENCE_PATHS:
            return False
        return all(request[key] == value for key, value in self.selectors.items())

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fault": dict(self.fault.spec),
            "times": self.remaining,
            **self.selectors,
        }


class FaultRules:
    """Counter-based rules, matched in insertion order; each match consumes one of `times`."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, rule_request: Any) -> FaultRule:
        if not isinstance(rule_request, Mapping):
            raise FaultSpecError("a fault rule must be a JSON object with a `fault`")
        unknown = set(rule_request) - {"fault", "times", *RULE_SELECTORS}
        if unknown:
            raise FaultSpecError(f"fault rule has unknown keys: {sorted(unknown)}")
        fault = parse_fault(rule_request.get("fault"))
        times = rule_request.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise FaultSpecError("fault rule: `times` must be an integer >= 1")
        selectors = {}
        for key in RULE_SELECTORS:
            value = rule_request.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise FaultSpecError(f"fault rule: `{key}` must be a string")
            selectors[key] = value
        if "path" in selectors and selectors["path"] not in RULE_PATHS:
            raise FaultSpecError(f"fault rule: `path` must be one of {sorted(RULE_PATHS)}")
        rule = FaultRule(f"rule-{next(self._ids)}", fault, times, selectors)
        self._rules.append(rule)
        return rule

    def take(self, upstream: str, tag: str | None, model: str | None, path: str) -> Fault | None:
        if not self._rules:
            return None
        request = {"upstream": upstream, "tag": tag, "model": model, "path": path}
        for index, rule in enumerate(self._rules):
            if rule.matches(request):
                rule.remaining -= 1
                if rule.remaining == 0:
                    del self._rules[index]
                return rule.fault
        return None

    def remove(self, upstream: str | None, tag: str | None) -> None:
        """Drop the rules scoped to this upstream and/or tag; with neither, drop all. A rule
        not scoped to a tag is not removed by a reset for one tag: it belongs to no test."""
        wanted = {
            key: value for key, value in (("upstream", upstream), ("tag", tag)) if value is not None
        }
        self._rules = [
            rule
            for rule in self._rules
            if not all(rule.selectors.get(key) == value for key, value in wanted.items())
        ]

    def describe(self) -> list[dict[str, Any]]:
        return [rule.describe() for rule in self._rules]


def reset_connection(transport: asyncio.Transport | None) -> None:
    """Abort with SO_LINGER 0, so the kernel sends RST instead of an orderly FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
    transport.abort()
