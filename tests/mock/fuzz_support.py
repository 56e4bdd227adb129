"""What the fuzz tests (test_fuzz.py, test_schemathesis.py) share: the private proxy they fuzz,
how many examples they run, and the verdicts every answer must pass.

The fuzzed proxy is a private one wired to the shared mock, with a small body limit, no cache
and a single attempt per request, so that:
- the shared stack's logs, metrics and ledger stay clean;
- every request valid enough to be dispatched reaches the mock and gets the mock's answer;
- a 5xx is either the mock's own (relayed: the mock's log shows it answered 5xx, or never
  finished the request) or the proxy's own, which for client input is the bug to catch.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.proxy_configs import mock_upstream, model, proxy_config
from harness.runtime.stack import Stack

# Every fuzz test runs this many examples (schemathesis: this many per API operation).
EXAMPLES_ENV = "SWITCHYARD_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 50

# The private proxy's body limit: small, so that oversized bodies are cheap to send.
MAX_BODY_BYTES = 64 * 1024
# A request unanswered (or a stream silent) this long is a hang. Far above anything the mock
# needs, and above the proxy's own upstream timeout below, so only a proxy hang trips it.
HANG_SECONDS = 20.0

CHAT_MODEL = "fuzz-chat"  # a chat-only upstream: /v1/responses is translated onto chat
NATIVE_MODEL = "fuzz-native"  # an upstream that speaks the Responses API
MODELS = (CHAT_MODEL, NATIVE_MODEL)
# The mock names itself after the first path segment of the upstream URL.
UPSTREAM_OF = {CHAT_MODEL: "fuzz-chat", NATIVE_MODEL: "fuzz-native"}

# What the proxy accepts from a client as a request id, and always returns.
VALID_REQUEST_ID = re.compile(r"[!-~]{1,128}")

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"

PROXY_CONFIG = proxy_config(
    [
        mock_upstream("fuzz-chat", responses=False, timeout_ms=10000),
        mock_upstream("fuzz-native", timeout_ms=10000),
    ],
    [model(CHAT_MODEL, ["fuzz-chat"]), model(NATIVE_MODEL, ["fuzz-native"])],
    server={"max_body_bytes": MAX_BODY_BYTES},
    # One attempt: an upstream error is relayed as it is, never retried into something else.
    retry={"max_attempts": 1},
    # Every dispatched request reaches the mock: none is answered from a cache.
    cache={"backend": "off"},
    ledger={"backend": "memory"},
)


def examples() -> int:
    value = os.environ.get(EXAMPLES_ENV, "")
    return int(value) if value.strip() else DEFAULT_EXAMPLES


class ProxyBug(AssertionError):
    """An answer the proxy must never give, whatever the input."""


@dataclass
class Tally:
    """What one fuzz test sent and got: case count, statuses, who answered."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # Answers that carry `x-mock-upstream`: the mock produced them.
    from_mock: int = 0
    # 200 answers that are event streams.
    streams: int = 0
    # Relayed upstream 5xx, and those among them that do not carry `x-mock-upstream` (the
    # mock failed before it could answer: its log tells).
    upstream_5xx: int = 0
    unmarked_upstream_5xx: int = 0

    def add(self, response: httpx.Response) -> None:
        self.cases += 1
        self.statuses[response.status_code] += 1
        content_type = response.headers.get("content-type", "")
        self.streams += response.status_code == 200 and content_type.startswith("text/event-stream")
        if "x-mock-upstream" in response.headers:
            self.from_mock += 1

    def record(self, node: pytest.Item, **labels: str) -> None:
        """The figures of the run so far, as the test's JUnit properties (`--junitxml`)."""
        figures: dict[str, object] = {
            **labels,
            "fuzz_cases": self.cases,
            "fuzz_statuses": json.dumps(dict(sorted(self.statuses.items()))),
            "fuzz_from_mock": self.from_mock,
            "fuzz_streams": self.streams,
            "fuzz_upstream_5xx": self.upstream_5xx,
        }
        kept = [item for item in node.user_properties if item[0] not in figures]
        node.user_properties[:] = [*kept, *figures.items()]


@dataclass
class FuzzProxy:
    stack: Stack
    url: str
    mock: testing.MockControl

    def log_text(self) -> str:
        path = self.stack.log_path(self.stack.config.proxy)
        return path.read_text(errors="replace") if path.exists() else ""

    def assert_alive(self) -> None:
        """No crash: the process still runs, answers /health, and never logged a panic."""
        assert self.stack.config.proxy in self.stack.services(), "the proxy process is gone"
        health = httpx.get(f"{self.url}/health", timeout=HANG_SECONDS)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert "panicked" not in self.log_text(), "the proxy logged a panic"


def start_fuzz_proxy(handle: testing.StackHandle, label: str) -> FuzzProxy:
    if handle.stack is None or handle.mock_url is None:
        pytest.skip("fuzzing needs a stack started by the harness (a private proxy, the mock)")
    private = testing.private_stack(handle, label, proxy_config=PROXY_CONFIG)
    return FuzzProxy(
        private, private.url(private.config.proxy), testing.MockControl(handle.mock_url)
    )


def stop_fuzz_proxy(proxy: FuzzProxy) -> None:
    proxy.mock.close()
    proxy.stack.down()


# --------------------------------------------------------------------------- verdicts


def openai_error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of an OpenAI error body; raises ProxyBug if the body is not one."""
    try:
        body = response.json()
    except ValueError:
        raise ProxyBug(
            f"{response.status_code} body is not JSON: {response.content[:300]!r}"
        ) from None
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
        and "param" in error
        and isinstance(error["param"], (str, type(None)))
        and "code" in error
        and isinstance(error["code"], (str, type(None)))
    ):
        raise ProxyBug(f"{response.status_code} body is not an OpenAI error: {body!r:.300}")
    return error


def is_from_mock(response: httpx.Response) -> bool:
    return "x-mock-upstream" in response.headers


def mock_entry(proxy: FuzzProxy, tag: str, request_id: str) -> Mapping[str, Any] | None:
    """The mock's log entry of the request the proxy forwarded with this request id."""
    for entry in reversed(proxy.mock.requests(tag=tag)):
        if entry["headers"].get("x-request-id") == request_id:
            return dict(entry)
    return None


def check_5xx(proxy: FuzzProxy, tag: str, response: httpx.Response, tally: Tally) -> None:
    """A 5xx is the upstream's (relayed) or the proxy's own. The mock answers at once, so the
    proxy's own (a 502 or 504 while the mock answered fine, a 500) is a bug here."""
    openai_error(response)
    entry = mock_entry(proxy, tag, response.headers.get("x-request-id", ""))
    upstream_failed = entry is not None and (entry["status"] is None or entry["status"] >= 500)
    if is_from_mock(response) or upstream_failed:
        tally.upstream_5xx += 1
        tally.unmarked_upstream_5xx += not is_from_mock(response)
        return
    raise ProxyBug(
        f"the proxy's own {response.status_code} for client input "
        f"(mock log entry: {entry!r:.300}): {response.text[:500]}"
    )


def check_common(
    proxy: FuzzProxy, tag: str, method: str, response: httpx.Response, tally: Tally
) -> None:
    """What holds for every answer to every request: a request id, an OpenAI body for every
    error, and no 5xx of the proxy's own."""
    tally.add(response)
    request_id = response.headers.get("x-request-id", "")
    if not VALID_REQUEST_ID.fullmatch(request_id):
        raise ProxyBug(f"bad or missing x-request-id: {request_id!r}")
    if method == "HEAD":
        return  # an answer without a body
    if response.status_code >= 500:
        check_5xx(proxy, tag, response, tally)
    elif response.status_code >= 400:
        openai_error(response)
