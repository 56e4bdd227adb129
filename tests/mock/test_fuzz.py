"""Property-based fuzzing of the proxy with hypothesis: request bodies of both model endpoints
(wrong types, missing fields, huge numbers, deep nesting, invalid UTF-8, truncated, empty and
oversized bodies), request ids, and routes and methods.

Every answer is checked against an oracle of what the proxy itself decides before it calls an
upstream (contracts.md, section 2), and against what must hold for every answer: an
`x-request-id`, an OpenAI error body for every 4xx/5xx, no 5xx of the proxy's own (a relayed
upstream 5xx is told apart through the mock's log), and no hang (every request is answered, and
every stream ends, within `fuzz_support.HANG_SECONDS`). After each test the proxy must still be
running, answer /health and have logged no panic.

The fuzzed proxy is a private one (`fuzz_support.PROXY_CONFIG`: a 64 KiB body limit, no cache,
one attempt) wired to the shared mock, so the shared stack's logs and metrics stay clean.

How many cases: each test runs `SWITCHYARD_FUZZ_EXAMPLES` examples (default 50, enough for
the mock-tier dev loop). test_schemathesis.py runs the same number per API operation. A full run
of at least 10,000 cases across both modules (6 tests here, 2 POST operations there, plus
schemathesis' own coverage cases):

    SWITCHYARD_FUZZ_EXAMPLES=1500 SWITCHYARD_REUSE=0 uv run pytest \\
        tests/mock/test_fuzz.py tests/mock/test_schemathesis.py -n 2 -p no:cacheprovider \\
        --junitxml=reports/fuzz.xml

Each test records its figures (`fuzz_cases`, `fuzz_statuses`, ...) as JUnit properties.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.pytest import stacks as testing
from harness.sse import sse_events
from tests.mock import fuzz_support as fz
from tests.mock.fuzz_support import CHAT, RESPONSES, FuzzProxy, ProxyBug, Tally

# Bad input is the proxy's first robustness test: `nox -s reliability` runs these too.
pytestmark = [pytest.mark.slow, pytest.mark.robustness]

FUZZ_SETTINGS = settings(
    max_examples=fz.examples(),
    deadline=None,
    # Fuzzing explores anew on every run, and leaves no example database in the repository.
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(scope="module")
def proxy(stack: testing.StackHandle) -> Iterator[FuzzProxy]:
    fuzzed = fz.start_fuzz_proxy(stack, "fuzz")
    yield fuzzed
    fz.stop_fuzz_proxy(fuzzed)


# --------------------------------------------------------------------------- the oracle
# What serde_json (the proxy's parser) makes of a body, emulated with Python's json module.


class NotJson(ValueError):
    pass


I64_MIN, U64_MAX = -(2**63), 2**64 - 1
# serde_json refuses a document nested deeper than this (its recursion limit of 128).
SERDE_MAX_DEPTH = 127


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise NotJson(f"number out of range: {text[:40]}")
    return value


def _int(text: str) -> int | float:
    value = int(text)
    # serde_json reads integers beyond i64/u64 as f64.
    return value if I64_MIN <= value <= U64_MAX else _float(text)


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def _depth_and_text_ok(value: Any) -> tuple[int, bool]:
    """Nesting depth, and whether every string (keys too) is valid Unicode (no lone
    surrogates, which Python's json accepts as escapes and serde_json refuses)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return deepest, False
        elif isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest, True


def serde_parse(raw: bytes) -> Any:
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_float=_float, parse_int=_int, parse_constant=_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise NotJson(str(error)) from error
    depth, text_ok = _depth_and_text_ok(value)
    if depth > SERDE_MAX_DEPTH or not text_ok:
        raise NotJson("too deep, or a lone surrogate")
    return value


def proxy_verdict(path: str, raw: bytes) -> tuple[int, str | None] | None:
    """The proxy's own answer to a body, (status, param), or None when it dispatches it."""
    if len(raw) > fz.MAX_BODY_BYTES:
        return 413, None
    try:
        doc = serde_parse(raw)
    except NotJson:
        return 400, None
    if not isinstance(doc, dict):
        return 400, None
    model = doc.get("model")
    if not isinstance(model, str):
        return 400, "model"
    if path == CHAT and not isinstance(doc.get("messages"), list):
        return 400, "messages"
    if doc.get("stream") is not None and not isinstance(doc["stream"], bool):
        return 400, "stream"
    if model not in fz.MODELS:
        return 404, "model"
    return None


# --------------------------------------------------------------------------- the client side


def check_stream(path: str, response: httpx.Response) -> None:
    """A 200 stream relays the mock's reply to its end, with no error event in it."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise ProxyBug(f"a stream answered as {response.headers.get('content-type')}")
    events = sse_events(response.text)
    if not events:
        raise ProxyBug("an empty event stream")
    if path == CHAT:
        try:
            chunks = [json.loads(data) for _, data in events[:-1]]
        except ValueError:
            raise ProxyBug(f"a chat stream with a chunk that is not JSON: {events}") from None
        if events[-1][1] != "[DONE]" or any("error" in chunk for chunk in chunks):
            raise ProxyBug(f"a chat stream without [DONE] or with an error: {events[-3:]}")
        return
    kinds = [kind for kind, _ in events]
    if kinds[-1] not in ("response.completed", "response.incomplete") or {
        "error",
        "response.failed",
    } & set(kinds):
        raise ProxyBug(f"a Responses stream that does not complete: {events[-3:]}")


def exchange(request: str, response: httpx.Response) -> str:
    """A request and its answer, for a failure message (hypothesis' own report of the failing
    example is blank while schemathesis' pytest plugin is loaded)."""
    return (
        f"  request: {request}\n  response: {response.status_code} {dict(response.headers)}\n"
        f"  {response.content[:1500]!r}"
    )


class Run:
    """One fuzz test's client: sends, applies the checks, keeps the tally."""

    def __init__(self, proxy: FuzzProxy, tag: str):
        self.proxy = proxy
        self.tag = tag
        self.tally = Tally()
        self.http = httpx.Client(
            base_url=proxy.url, headers={"x-mock-tag": tag}, timeout=fz.HANG_SECONDS
        )
        # Ids of stored responses by model, for bodies that continue a conversation.
        self.response_ids: dict[str, list[str]] = {}
        # Request ids of the answers that came from the mock, in order.
        self.forwarded_ids: list[str] = []

    def send(
        self,
        method: str,
        path: str,
        content: bytes | Iterator[bytes] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """The whole answer, streams included, or ProxyBug for a hang or no answer at all."""
        deadline = time.monotonic() + fz.HANG_SECONDS
        shown = content if isinstance(content, bytes) else "<chunks>"
        request = f"{method} {path} {headers or {}} {shown!r:.1500}"
        try:
            with self.http.stream(method, path, content=content, headers=headers) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise ProxyBug(f"hang: a stream still running after the bound: {request}")
        except httpx.TimeoutException as error:
            raise ProxyBug(f"hang: no answer within the bound: {request}") from error
        except httpx.TransportError as error:
            raise ProxyBug(f"no answer ({error!r}): {request}") from error
        answer = httpx.Response(
            response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            request=response.request,
        )
        try:
            fz.check_common(self.proxy, self.tag, method, answer, self.tally)
        except ProxyBug as bug:
            raise ProxyBug(f"{bug}\n{exchange(request, answer)}") from None
        if fz.is_from_mock(answer):
            self.forwarded_ids.append(answer.headers["x-request-id"])
        return answer

    def post_body(self, path: str, raw: bytes) -> httpx.Response:
        """Posts a body and checks the answer against the oracle; a failure shows both."""
        response = self.send("POST", path, raw, headers={"content-type": "application/json"})
        try:
            self.judge(path, raw, response)
        except ProxyBug as bug:
            raise ProxyBug(f"{bug}\n{exchange(f'POST {path} {raw!r:.1500}', response)}") from None
        return response

    def judge(self, path: str, raw: bytes, response: httpx.Response) -> None:
        verdict = proxy_verdict(path, raw)
        status = response.status_code
        if verdict is not None:
            expected_status, param = verdict
            if status != expected_status or fz.is_from_mock(response):
                raise ProxyBug(f"expected the proxy's own {expected_status}, got {status}")
            error = fz.openai_error(response)
            if error["type"] != "invalid_request_error" or error["param"] != param:
                raise ProxyBug(f"expected an invalid_request_error on {param!r}: {error}")
            if status == 404 and error["code"] != "model_not_found":
                raise ProxyBug(f"expected model_not_found: {error}")
            if status == 413 and error["code"] != "request_too_large":
                raise ProxyBug(f"expected request_too_large: {error}")
            return
        doc = serde_parse(raw)
        model = doc["model"]
        translated = path == RESPONSES and model == fz.CHAT_MODEL
        if status >= 500:
            return  # judged by check_common: the upstream's, or a ProxyBug already
        # A response made on the other model lives on an upstream this model does not have: the
        # proxy refuses to send its continuation anywhere else (contract section 3).
        continues_elsewhere = path == RESPONSES and any(
            doc.get("previous_response_id") in ids
            for other, ids in self.response_ids.items()
            if other != model
        )
        if fz.is_from_mock(response):
            if response.headers["x-mock-upstream"] != fz.UPSTREAM_OF[model]:
                raise ProxyBug(f"{model} served by {response.headers['x-mock-upstream']}")
        elif continues_elsewhere and status == 400:
            if fz.openai_error(response)["param"] != "previous_response_id":
                raise ProxyBug("a continuation held elsewhere refused without its param")
            return
        elif not (translated and status in (400, 404)):
            raise ProxyBug(f"a dispatched request got {status} without reaching the mock")
        elif status == 404 and fz.openai_error(response)["code"] != "previous_response_not_found":
            raise ProxyBug("a translated request's own 404 is not previous_response_not_found")
        elif status == 400 and fz.openai_error(response)["param"] is None:
            raise ProxyBug("a translation 400 that names no param")
        if status != 200:
            return
        if doc.get("stream") is True:
            check_stream(path, response)
            return
        body = response.json()
        expected_object = "chat.completion" if path == CHAT else "response"
        if body.get("object") != expected_object or body.get("model") != model:
            raise ProxyBug(f"a 200 that is not a {expected_object} of {model}: {body!r:.300}")
        if path == RESPONSES:
            self.response_ids.setdefault(model, []).append(body["id"])

    def finish(self, node: pytest.Item) -> None:
        """Checks over the whole test: the mock got exactly the requests that came back with
        its answers (nothing the proxy refused reached it), with the request ids the client
        got back; the proxy is alive."""
        self.http.close()
        self.tally.record(node)
        counts = self.proxy.mock.counts(tag=self.tag)
        assert counts["total"] == self.tally.from_mock + self.tally.unmarked_upstream_5xx
        # The mock's log keeps the last 10,000 requests of all tests: compare what it kept.
        entries = self.proxy.mock.requests(tag=self.tag)
        kept = max(0, len(entries) - self.tally.unmarked_upstream_5xx)
        seen = {entry["headers"].get("x-request-id") for entry in entries}
        assert set(self.forwarded_ids[len(self.forwarded_ids) - kept :]) <= seen
        self.proxy.assert_alive()


# --------------------------------------------------------------------------- strategies

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
)
ANY = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
WORDS = st.text(max_size=60) | st.lists(st.sampled_from(["hi", "there", "ok", "x"])).map(" ".join)
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=40),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=False, allow_infinity=False),
)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right shape three times in four, anything JSON otherwise."""
    return st.one_of(good, good, good, ANY)


MODEL = st.one_of(
    st.sampled_from(fz.MODELS),
    st.sampled_from(fz.MODELS),
    st.sampled_from(fz.MODELS),
    st.sampled_from(["", "unknown", "mock-chat", "FUZZ-CHAT", "fuzz-chat ", "fuzz-chat\u0000"]),
    ANY,
)
# Streams half of the time: their relay is a path of its own.
STREAM = st.one_of(st.just(True), st.just(True), st.booleans(), st.none(), ANY)
# Fields both APIs (or their upstreams) know, with values that are sometimes absurd.
COMMON_FIELDS = {
    "stream": STREAM,
    "temperature": mostly(NUMBERS),
    "top_p": mostly(NUMBERS),
    "user": mostly(st.text(max_size=20)),
    "metadata": mostly(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
    "seed": mostly(NUMBERS),
}

CHAT_PART = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["text", "input_text", "image_url", "refusal"]))},
    optional={"text": mostly(WORDS), "image_url": ANY, "refusal": ANY},
)
CHAT_MESSAGE = mostly(
    st.fixed_dictionaries(
        {
            "role": mostly(st.sampled_from(["user", "assistant", "system", "developer", "tool"])),
            "content": st.one_of(WORDS, WORDS, st.lists(CHAT_PART, max_size=3), ANY),
        },
        optional={"name": ANY, "tool_calls": ANY, "tool_call_id": ANY},
    )
)
CHAT_FIELDS = {
    **COMMON_FIELDS,
    "stream_options": mostly(st.fixed_dictionaries({}, optional={"include_usage": ANY})),
    "max_tokens": mostly(NUMBERS),
    "max_completion_tokens": mostly(NUMBERS),
    "n": mostly(NUMBERS),
    "stop": ANY,
    "tools": ANY,
    "tool_choice": ANY,
    "response_format": ANY,
    "logprobs": ANY,
}

INPUT_PART = st.fixed_dictionaries(
    {
        "type": mostly(
            st.sampled_from(["input_text", "output_text", "input_image", "refusal", "text"])
        )
    },
    optional={"text": mostly(WORDS), "image_url": ANY, "detail": ANY, "refusal": ANY},
)
INPUT_CONTENT = st.one_of(WORDS, WORDS, st.lists(INPUT_PART, max_size=3), ANY)
INPUT_ITEM = st.one_of(
    st.fixed_dictionaries(
        {
            "role": mostly(st.sampled_from(["user", "assistant", "system", "developer"])),
            "content": INPUT_CONTENT,
        },
        optional={"type": mostly(st.just("message"))},
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call")},
        optional={"call_id": mostly(WORDS), "name": mostly(WORDS), "arguments": mostly(WORDS)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output")},
        optional={
            "call_id": mostly(WORDS),
            "output": st.one_of(WORDS, st.lists(INPUT_PART, max_size=2), ANY),
        },
    ),
    ANY,
)
TOOL = mostly(
    st.fixed_dictionaries(
        {"type": mostly(st.just("function")), "name": mostly(WORDS)},
        optional={"description": ANY, "parameters": ANY, "strict": ANY},
    )
)
# Stands for the id of a response the proxy stored earlier (see Run.response_ids).
CONTINUE = "<continue>"
RESPONSES_FIELDS = {
    **COMMON_FIELDS,
    "instructions": mostly(WORDS),
    "previous_response_id": st.one_of(st.just(CONTINUE), st.just(CONTINUE), WORDS, ANY),
    "max_output_tokens": mostly(NUMBERS),
    "store": mostly(st.booleans()),
    "tools": mostly(st.lists(TOOL, max_size=3)),
    "tool_choice": mostly(
        st.sampled_from(["auto", "none", "required"])
        | st.fixed_dictionaries({"type": mostly(st.just("function")), "name": mostly(WORDS)})
    ),
    "parallel_tool_calls": mostly(st.booleans()),
    "text": mostly(
        st.fixed_dictionaries(
            {
                "format": mostly(
                    st.fixed_dictionaries(
                        {"type": mostly(st.sampled_from(["text", "json_object", "json_schema"]))},
                        optional={"schema": ANY, "name": ANY, "strict": ANY},
                    )
                )
            }
        )
    ),
    "reasoning": ANY,
    "truncation": ANY,
    "include": ANY,
}
EXTRA_FIELDS = st.dictionaries(st.text(max_size=12), ANY, max_size=3)


@st.composite
def bodies(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """Request objects: mostly well-formed, with required fields sometimes dropped and any
    field sometimes of any type."""
    if path == CHAT:
        required = {"model": MODEL, "messages": mostly(st.lists(CHAT_MESSAGE, max_size=4))}
        optional = CHAT_FIELDS
    else:
        required = {
            "model": MODEL,
            "input": st.one_of(WORDS, st.lists(INPUT_ITEM, max_size=4), ANY),
        }
        optional = RESPONSES_FIELDS
    body = draw(st.fixed_dictionaries(required, optional=optional))
    if draw(st.booleans()):
        for key in draw(st.sets(st.sampled_from(sorted(required)))):
            del body[key]
    extra = draw(EXTRA_FIELDS)
    return {**extra, **body} if draw(st.booleans()) else {**body, **extra}


def encode(body: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def encoded(draw: st.DrawFn, path: str) -> bytes:
    return encode(draw(bodies(path)), ascii_only=draw(st.booleans()))


# Literals serde_json and Python disagree on or choke on, to splice into a body.
NUMBER_LITERALS = st.one_of(
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1e-400",
            "1" + "0" * 400,
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.7976931348623157e308",
            "1e999999999999",
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
            "01",
            "1.",
            ".5",
            "+1",
            "0x10",
        ]
    ),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?\Z"),
)
BAD_STRING_BYTES = st.one_of(
    st.sampled_from(
        [
            b"\xff",
            b"\xc3\x28",  # a lead byte without its continuation
            b"\x80",  # a lone continuation byte
            b"\xc0\xaf",  # an overlong encoding
            b"\xed\xa0\x80",  # a UTF-8 encoded surrogate
            b"\xf4\x90\x80\x80",  # beyond U+10FFFF
            b"\\ud800",  # a lone surrogate escape
            b"\\udc00\\ud800",
            b"\\ud83d\\ude00",  # a valid pair
            b"\\u0000",
            b"\x01",  # a raw control character
            b"\\x41",  # not a JSON escape
            "é✓😀".encode(),
        ]
    ),
    st.binary(min_size=1, max_size=6),
)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    # Around serde_json's limit (the outer object adds a level), and far beyond it.
    depth = draw(st.one_of(st.integers(1, 40), st.integers(122, 132), st.integers(133, 5000)))
    if draw(st.booleans()):
        inner = b"[" * depth + b"]" * depth
    else:
        inner = b'{"a":' * depth + b"1" + b"}" * depth
    if draw(st.booleans()):  # unbalanced
        inner = inner[: draw(st.integers(0, len(inner) - 1))]
    return inner


@st.composite
def malformed(draw: st.DrawFn, path: str) -> bytes:
    """Bytes that are often not JSON, or JSON the two parsers might disagree on."""
    kind = draw(
        st.sampled_from(
            ["splice-value", "splice-value", "truncate", "corrupt", "wrap", "prefix", "binary"]
        )
    )
    if kind == "binary":
        return draw(
            st.one_of(st.binary(max_size=300), st.sampled_from([b"", b" ", b"\n\t ", b"null"]))
        )
    body = draw(bodies(path))
    raw = encode(body, ascii_only=draw(st.booleans()))
    if kind == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if kind == "corrupt":
        start = draw(st.integers(0, len(raw)))
        end = draw(st.integers(start, min(len(raw), start + 8)))
        return raw[:start] + draw(st.binary(max_size=8)) + raw[end:]
    if kind == "wrap":
        return encode(draw(st.sampled_from([[body], body.get("model"), str(body), len(raw)])))
    if kind == "prefix":
        prefix = draw(st.sampled_from([b"\xef\xbb\xbf", b"\x00", b"\xfe\xff", b")]}'\n"]))
        return prefix + raw
    # splice-value: a field whose value is a raw literal (a number, a nesting, a broken string)
    literal = draw(
        st.one_of(
            NUMBER_LITERALS.map(str.encode),
            nested(),
            st.tuples(st.text(max_size=5), BAD_STRING_BYTES, st.text(max_size=5)).map(
                lambda parts: (
                    b'"' + encode(parts[0])[1:-1] + parts[1] + encode(parts[2])[1:-1] + b'"'
                )
            ),
        )
    )
    key = draw(st.sampled_from(["model", "messages", "input", "stream", "x", "max_tokens"]))
    rest = encode({k: v for k, v in body.items() if k != key})[1:-1]
    field = encode(key) + b":" + literal
    parts = [field, rest] if draw(st.booleans()) else [rest, field]
    return b"{" + b",".join(part for part in parts if part) + b"}"


@st.composite
def malformed_cases(draw: st.DrawFn) -> tuple[str, bytes]:
    path = draw(st.sampled_from([CHAT, RESPONSES]))
    return path, draw(malformed(path))


def continue_conversation(run: Run, raw: bytes) -> bytes:
    """Replaces the CONTINUE marker by the id of a response stored earlier, if any."""
    marker = encode(CONTINUE)
    if marker not in raw:
        return raw
    ids = [rid for model_ids in run.response_ids.values() for rid in model_ids]
    return raw.replace(marker, encode(ids[-1]) if ids else encode("resp_unknown"))


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("path", [CHAT, RESPONSES])
def test_fuzzed_bodies_get_the_proxy_verdict_or_a_mock_answer(
    proxy: FuzzProxy, tag: str, path: str, request: pytest.FixtureRequest
) -> None:
    """Request objects with fields missing, of the wrong type or absurd: the proxy refuses
    exactly those the contract says it refuses, and relays the mock's answer to the others
    (streams to their end); a translated /v1/responses may also be refused by the translator."""
    run = Run(proxy, tag)

    @FUZZ_SETTINGS
    @given(raw=encoded(path))
    def fuzz(raw: bytes) -> None:
        run.post_body(path, continue_conversation(run, raw))

    fuzz()
    run.finish(request.node)
    # The fuzz reached both sides of the proxy: its own refusals and the upstream.
    statuses = run.tally.statuses
    assert statuses[200] > 0 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 0
    assert run.tally.from_mock >= max(1, run.tally.cases // 25)


def test_malformed_bytes_are_400_never_5xx(
    proxy: FuzzProxy, tag: str, request: pytest.FixtureRequest
) -> None:
    """Truncated, corrupted, wrapped and prefixed bodies, invalid UTF-8, lone surrogates, out of
    range numbers, NaN, nesting around and beyond the parser's limit: 400 where serde_json
    refuses the body, the same verdicts as any other body where it does not."""
    run = Run(proxy, tag)

    @FUZZ_SETTINGS
    @given(case=malformed_cases())
    def fuzz(case: tuple[str, bytes]) -> None:
        run.post_body(*case)

    fuzz()
    run.finish(request.node)
    assert run.tally.statuses[400] > 0


def sized_body(path: str, model: str, size: int, garbage: bool, pad: bytes, lead: bool) -> bytes:
    """A body of exactly `size` bytes (or the smallest valid one): a valid request padded with
    JSON whitespace, or garbage."""
    if garbage:
        return b"{" * size
    body: dict[str, Any] = {"model": model}
    if path == CHAT:
        body["messages"] = [{"role": "user", "content": "how big"}]
    else:
        body["input"] = "how big"
    raw = encode(body)
    fill = (pad * size)[: max(0, size - len(raw))]
    return fill + raw if lead else raw + fill


SIZES = st.one_of(
    st.integers(fz.MAX_BODY_BYTES - 16, fz.MAX_BODY_BYTES + 16),
    st.integers(200, fz.MAX_BODY_BYTES),
    st.integers(fz.MAX_BODY_BYTES + 1, 4 * fz.MAX_BODY_BYTES),
)


def test_body_size_limit_is_exact_and_answered_with_413(
    proxy: FuzzProxy, tag: str, request: pytest.FixtureRequest
) -> None:
    """Bodies up to `max_body_bytes` go through, larger ones get 413 `request_too_large`,
    with a Content-Length or chunked. Each goes on a connection of its own: after an early 413
    the proxy may close the connection instead of reading the rest of the body, without saying
    so (no `Connection: close`), and a client that reuses it can lose its next request. That is
    a known limit of hyper, not what this test is about."""
    run = Run(proxy, tag)

    @FUZZ_SETTINGS
    @given(
        path=st.sampled_from([CHAT, RESPONSES]),
        model=st.sampled_from(fz.MODELS),
        size=SIZES,
        garbage=st.booleans(),
        pad=st.sampled_from([b" ", b"\n", b"\t", b"\r\n"]),
        lead=st.booleans(),
        chunk=st.none() | st.integers(512, 70_000),
    )
    def fuzz(
        path: str, model: str, size: int, garbage: bool, pad: bytes, lead: bool, chunk: int | None
    ) -> None:
        raw = sized_body(path, model, size, garbage, pad, lead)
        content: bytes | Iterator[bytes] = raw
        if chunk is not None:  # no Content-Length: the limit is found while reading
            content = iter([raw[i : i + chunk] for i in range(0, len(raw), chunk)])
        headers = {"content-type": "application/json", "connection": "close"}
        response = run.send("POST", path, content, headers=headers)
        try:
            run.judge(path, raw, response)
        except ProxyBug as bug:
            raise ProxyBug(f"{bug} (a body of {len(raw)} bytes, chunks of {chunk})") from None

    fuzz()
    run.finish(request.node)
    assert run.tally.statuses[413] > 0 and run.tally.statuses[200] > 0


VISIBLE_ASCII = range(0x21, 0x7F)
HEADER_BYTES = [*VISIBLE_ASCII, 0x20, 0x09, 0x80, 0xC3, 0xA9, 0xFF]


@st.composite
def request_ids(draw: st.DrawFn) -> bytes | None:
    """Header values HTTP allows: visible ASCII (as long as 140), spaces inside, obs-text."""
    if draw(st.integers(0, 9)) == 0:
        return None
    if draw(st.booleans()):
        chars = draw(st.lists(st.sampled_from(list(VISIBLE_ASCII)), min_size=1, max_size=140))
    else:
        chars = draw(st.lists(st.sampled_from(HEADER_BYTES), max_size=200))
    return bytes(chars).strip(b" \t")


ENDPOINTS = [
    ("GET", "/health"),
    ("GET", "/status"),
    ("GET", "/v1/models"),
    ("POST", CHAT),
    ("POST", RESPONSES),
    ("GET", "/v1/nowhere"),
]


def test_request_ids_are_kept_when_valid_and_replaced_otherwise(
    proxy: FuzzProxy, tag: str, request: pytest.FixtureRequest
) -> None:
    """The client's x-request-id if it is 1-128 visible ASCII characters, else a new UUID;
    the same id reaches the upstream."""
    run = Run(proxy, tag)
    bodies_by_path = {
        CHAT: encode({"model": fz.CHAT_MODEL, "messages": [{"role": "user", "content": "id"}]}),
        RESPONSES: encode({"model": fz.NATIVE_MODEL, "input": "id"}),
    }

    @FUZZ_SETTINGS
    @given(value=request_ids(), endpoint=st.sampled_from(ENDPOINTS))
    def fuzz(value: bytes | None, endpoint: tuple[str, str]) -> None:
        method, path = endpoint
        headers = {} if value is None else {"x-request-id": value}
        response = run.send(method, path, bodies_by_path.get(path), headers=headers)
        returned = response.headers["x-request-id"]
        sent = f"{method} {path} with x-request-id {value!r}"
        if value is not None and fz.VALID_REQUEST_ID.fullmatch(value.decode("latin-1")):
            assert returned == value.decode("ascii"), f"{sent}: got {returned!r} back"
        else:
            assert uuid.UUID(returned).version == 4, f"{sent}: got {returned!r} back"
        assert response.status_code == (404 if path == "/v1/nowhere" else 200), sent

    fuzz()
    run.finish(request.node)
    assert run.forwarded_ids


KNOWN_ROUTES = {
    "/health": "GET",
    "/status": "GET",
    "/v1/models": "GET",
    CHAT: "POST",
    RESPONSES: "POST",
}
# `/v1/models/<id>`: any non-empty rest is an id, slashes included (a 404 unless configured).
MODEL_ROUTE = "/v1/models/"
SEGMENTS = st.one_of(
    st.sampled_from(["v1", "chat", "completions", "responses", "models", "health", "status", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_~%:@!$&'()*+,;=", max_size=10),
)
PATHS = st.one_of(
    st.sampled_from(sorted(KNOWN_ROUTES)),
    st.sampled_from(sorted(KNOWN_ROUTES)).map(lambda p: p + "/"),
    st.sampled_from(sorted(KNOWN_ROUTES)).map(str.upper),
    st.lists(SEGMENTS, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from([*fz.MODELS, "no-such-model"]).map(lambda name: MODEL_ROUTE + name),
)
METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]),
    # CONNECT asks the client to switch protocols on a 2xx: not a request of this API.
    st.from_regex(r"\A[A-Z]{1,12}\Z").filter(lambda method: method != "CONNECT"),
)


def test_unknown_routes_and_methods_get_openai_404_and_405(
    proxy: FuzzProxy, tag: str, request: pytest.FixtureRequest
) -> None:
    """Any method on any path: the routes answer, an unknown path is 404 `unknown_url`, a
    known path with a wrong method 405 `method_not_allowed` with `Allow`."""
    run = Run(proxy, tag)

    @FUZZ_SETTINGS
    @given(method=METHODS, path=PATHS, query=st.sampled_from(["", "?a=1", "?stream=true&&"]))
    def fuzz(method: str, path: str, query: str) -> None:
        # An absolute URL: httpx refuses a relative one whose path starts with "//".
        url = f"{proxy.url}{path}{query}"
        response = run.send(method, url, b"" if method not in ("GET", "HEAD") else None)
        sent_path = response.request.url.raw_path.split(b"?")[0].decode()
        model_id = sent_path.removeprefix(MODEL_ROUTE) if sent_path.startswith(MODEL_ROUTE) else ""
        allowed = "GET" if model_id else KNOWN_ROUTES.get(sent_path)
        code = "unknown_url"
        if allowed is None:
            expected = 404
        elif method == allowed or (method == "HEAD" and allowed == "GET"):
            expected = 200 if allowed == "GET" else 400  # an empty body is not JSON
            if model_id and urllib.parse.unquote(model_id) not in fz.MODELS:
                expected, code = 404, "model_not_found"
        else:
            expected, code = 405, "method_not_allowed"
        sent = f"{method} {sent_path}: {response.status_code} {response.content[:300]!r}"
        assert response.status_code == expected, sent
        if expected == 405:
            assert allowed in response.headers["allow"].split(","), sent
        if expected in (404, 405) and method != "HEAD":  # HEAD: no body
            assert fz.openai_error(response)["code"] == code, sent

    fuzz()
    run.finish(request.node)
    assert {404, 405} <= set(run.tally.statuses)
