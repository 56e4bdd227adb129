"""The mock's faults for robustness tests (docs/contracts.md section 1, "Faults"): a broken 200
body, a line that is not SSE, a stream that ends early but cleanly, one without its last event,
a hang part-way through, a body dripped a few bytes at a time, a flood of large events, and an
error that quotes the key it refuses. Each is checked on the wire, against a mock of its own."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from harness.mock.faults import FaultSpecError, parse_fault, parse_fault_header
from harness.pytest.mock_wire import (
    chat_body,
    chat_payloads,
    log_entries,
    response_events,
    sdk,
    wire_events,
)
from harness.runtime.poll import wait_until

CHAT_PATH, RESPONSES_PATH = "v1/chat/completions", "v1/responses"


@pytest.fixture
def upstream(tag: str) -> str:
    return "faults-" + tag


def responses_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "mock-chat", "input": text, **extra}


def post(
    http: httpx.Client, upstream: str, path: str, body: dict[str, Any], fault: str
) -> httpx.Response:
    return http.post(f"/{upstream}/{path}", json=body, headers={"x-mock-fault": fault})


def responses_stream(http: httpx.Client, upstream: str, text: str, fault: str) -> httpx.Response:
    """A streamed Responses request with the fault `fault`."""
    return post(http, upstream, RESPONSES_PATH, responses_body(text, stream=True), fault)


@contextlib.contextmanager
def impatient_stream(
    mock_url: str, upstream: str, body: dict[str, Any], fault: str
) -> Iterator[httpx.Response]:
    """A chat request whose reply must stall: reading gives up after 0.5 s of silence."""
    with (
        httpx.Client(base_url=mock_url, timeout=httpx.Timeout(10, read=0.5)) as impatient,
        pytest.raises(httpx.ReadTimeout),
        impatient.stream(
            "POST", f"/{upstream}/{CHAT_PATH}", json=body, headers={"x-mock-fault": fault}
        ) as reply,
    ):
        yield reply


def last_entry(http: httpx.Client, upstream: str) -> dict[str, Any]:
    return log_entries(http, upstream=upstream)[-1]


def chat_text(payloads: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for p in payloads for choice in p["choices"]
    )


# --------------------------------------------------------------------------- broken bodies


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", [CHAT_PATH, RESPONSES_PATH])
def test_malformed_body_is_a_200_whose_json_is_broken(
    http: httpx.Client, upstream: str, path: str, stream: bool
) -> None:
    body = chat_body(stream=stream) if path == CHAT_PATH else responses_body(stream=stream)
    reply = post(http, upstream, path, body, "type=malformed_body")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-mock-upstream"] == upstream
    with pytest.raises(ValueError):
        json.loads(reply.content)
    entry = last_entry(http, upstream)
    assert (entry["status"], entry["outcome"]) == (200, "fault:malformed_body")
    assert entry["sent_bytes"] == len(reply.content)


def test_not_sse_puts_a_stray_line_into_an_otherwise_normal_stream(
    http: httpx.Client, upstream: str
) -> None:
    reply = post(http, upstream, CHAT_PATH, chat_body("a b", stream=True), "type=not_sse")
    events = wire_events(reply.text)
    stray = [event for event in events if not event.startswith("data: ")]
    assert stray == ["this line is not server-sent events"]
    assert events.index(stray[0]) == 1, "right after the role chunk (after_chunks defaults to 0)"
    events.remove(stray[0])
    assert events[-1] == "data: [DONE]"
    assert chat_text(chat_payloads(events)) == "reply 1: a b"


def test_not_sse_on_a_responses_stream_comes_after_n_deltas(
    http: httpx.Client, upstream: str
) -> None:
    reply = responses_stream(http, upstream, "a b", "type=not_sse;after_chunks=2")
    blocks = wire_events(reply.text)
    stray = blocks.index("this line is not server-sent events")
    events = [block.split("\n")[0] for block in blocks]
    assert events[stray - 2 : stray] == ["event: response.output_text.delta"] * 2
    assert events[-1] == "event: response.completed"


# --------------------------------------------------------------------------- streams cut short


def test_truncate_ends_a_chat_stream_cleanly_without_finish_or_done(
    http: httpx.Client, upstream: str
) -> None:
    # A clean end: the chunked body is terminated, so httpx raises nothing.
    reply = post(
        http, upstream, CHAT_PATH, chat_body("a b c", stream=True), "type=truncate;after_chunks=2"
    )
    events = wire_events(reply.text)
    assert "data: [DONE]" not in events
    payloads = chat_payloads(events)
    assert chat_text(payloads) == "reply 1:"
    assert all(p["choices"][0]["finish_reason"] is None for p in payloads)
    entry = last_entry(http, upstream)
    assert (entry["status"], entry["outcome"]) == (200, "fault:truncate")


def test_truncate_ends_a_responses_stream_without_its_completion(
    http: httpx.Client, upstream: str
) -> None:
    reply = responses_stream(http, upstream, "a b c", "type=truncate;after_chunks=1")
    names = [name for name, _ in response_events(reply.text)]
    assert names[-1] == "response.output_text.delta"
    assert names.count("response.output_text.delta") == 1
    assert "response.completed" not in names


@pytest.mark.parametrize("path", [CHAT_PATH, RESPONSES_PATH])
def test_truncate_without_stream_sends_half_the_promised_body_then_closes(
    http: httpx.Client, upstream: str, path: str
) -> None:
    body = chat_body("a b c") if path == CHAT_PATH else responses_body("a b c")
    received = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", f"/{upstream}/{path}", json=body, headers={"x-mock-fault": "type=truncate"}
        ) as reply,
    ):
        promised = int(reply.headers["content-length"])
        for piece in reply.iter_raw():
            received += piece
    assert 0 < len(received) < promised
    assert last_entry(http, upstream)["outcome"] == "fault:truncate"


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        (CHAT_PATH, chat_body("a b", stream=True), "chat.completion"),
        (RESPONSES_PATH, responses_body("a b", stream=True), "response"),
    ],
    ids=["chat", "responses"],
)
def test_ignore_stream_answers_a_streaming_request_whole(
    http: httpx.Client, upstream: str, path: str, body: dict[str, Any], kind: str
) -> None:
    reply = post(http, upstream, path, body, "type=ignore_stream")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["object"] == kind
    assert last_entry(http, upstream)["outcome"] == "fault:ignore_stream"


def test_no_done_sends_the_whole_chat_stream_but_its_done(
    http: httpx.Client, upstream: str
) -> None:
    body = chat_body("a b", stream=True, stream_options={"include_usage": True})
    events = wire_events(post(http, upstream, CHAT_PATH, body, "type=no_done").text)
    assert "data: [DONE]" not in events
    payloads = chat_payloads(events)
    assert chat_text(payloads) == "reply 1: a b"
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["usage"]["completion_tokens"] == 4


def test_no_done_sends_the_whole_responses_stream_but_its_completion(
    http: httpx.Client, upstream: str
) -> None:
    reply = post(http, upstream, RESPONSES_PATH, responses_body("a b", stream=True), "type=no_done")
    names = [name for name, _ in response_events(reply.text)]
    assert names[-1] == "response.output_item.done"
    assert "response.completed" not in names


def test_hang_after_chunks_stops_mid_stream_until_the_client_leaves(
    mock_url: str, http: httpx.Client, upstream: str
) -> None:
    received = ""
    body = chat_body("a b c", stream=True)
    with impatient_stream(mock_url, upstream, body, "type=hang;after_chunks=2") as reply:
        for text in reply.iter_text():
            received += text
    assert chat_text(chat_payloads(wire_events(received))) == "reply 1:"
    wait_until(
        lambda: last_entry(http, upstream)["outcome"] == "cancelled",
        what="the request to be logged as cancelled",
        timeout=10,
        cap=0.02,
    )


def test_hang_after_chunks_without_stream_sends_half_the_body_then_waits(
    mock_url: str, upstream: str
) -> None:
    with impatient_stream(
        mock_url, upstream, chat_body("a b c"), "type=hang;after_chunks=0"
    ) as reply:
        assert reply.status_code == 200
        for _ in reply.iter_raw():
            pass


# --------------------------------------------------------------------------- slow and large


@pytest.mark.parametrize("path", [CHAT_PATH, RESPONSES_PATH])
def test_drip_delivers_a_normal_stream_in_small_pieces(
    http: httpx.Client, upstream: str, path: str
) -> None:
    body = (
        chat_body("a b", stream=True) if path == CHAT_PATH else responses_body("a b", stream=True)
    )
    pieces = []
    with http.stream(
        "POST",
        f"/{upstream}/{path}",
        json=body,
        headers={"x-mock-fault": "type=drip;bytes_per_write=64;delay_ms=2"},
    ) as reply:
        pieces.extend(reply.iter_raw())
    raw = b"".join(pieces).decode()
    assert len(pieces) > 1
    if path == CHAT_PATH:
        events = wire_events(raw)
        assert events[-1] == "data: [DONE]"
        assert chat_text(chat_payloads(events)) == "reply 1: a b"
    else:
        assert [name for name, _ in response_events(raw)][-1] == "response.completed"
    entry = last_entry(http, upstream)
    assert entry["outcome"] == "fault:drip"
    assert entry["sent_bytes"] == len(raw.encode())


def test_drip_without_stream_is_a_whole_body_the_sdk_parses(mock_url: str, upstream: str) -> None:
    client = sdk(mock_url, upstream).with_options(
        default_headers={"x-mock-fault": "type=drip;bytes_per_write=16;delay_ms=1"}
    )
    completion = client.chat.completions.create(**chat_body("drip me"))
    assert completion.choices[0].message.content == "reply 1: drip me"


@pytest.mark.parametrize("path", [CHAT_PATH, RESPONSES_PATH])
def test_flood_streams_many_large_content_events(
    mock_url: str, http: httpx.Client, upstream: str, path: str
) -> None:
    fault = {"x-mock-fault": "type=flood;chunks=40;chunk_bytes=5000"}
    client = sdk(mock_url, upstream).with_options(default_headers=fault)
    if path == CHAT_PATH:
        chunks = list(client.chat.completions.create(**chat_body("x", stream=True)))
        deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    else:
        events = list(client.responses.create(**responses_body("x", stream=True)))
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert events[-1].type == "response.completed"
    assert deltas == ["x" * 5000] * 40
    assert last_entry(http, upstream)["sent_bytes"] > 40 * 5000


# --------------------------------------------------------------------------- errors and specs


def test_status_echo_key_quotes_the_key_it_was_sent(mock_url: str, upstream: str) -> None:
    client = openai.OpenAI(
        base_url=f"{mock_url}/{upstream}/v1",
        api_key="sk-quoted-back-1234",
        max_retries=0,
        default_headers={"x-mock-fault": "type=status;status=401;echo_key=1"},
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(**chat_body())
    assert "sk-quoted-back-1234" in raised.value.message


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "drip", "bytes_per_write": 0},
        {"type": "drip", "bytes_per_write": 1.5},
        {"type": "flood", "chunks": -1},
        {"type": "flood", "chunk_bytes": 0},
        {"type": "truncate", "after_chunks": 1.5},
        {"type": "no_done", "after_chunks": 1},
        {"type": "malformed_body", "after_chunks": 1},
        {"type": "status", "status": 401, "echo_key": "yes"},
    ],
)
def test_bad_parameters_of_the_new_faults_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(FaultSpecError):
        parse_fault(spec)


def test_new_faults_parse_from_the_header() -> None:
    assert parse_fault_header("type=drip;bytes_per_write=3;delay_ms=2.5").spec == {
        "type": "drip",
        "bytes_per_write": 3,
        "delay_ms": 2.5,
    }
    assert parse_fault_header("type=hang;after_chunks=2").mid_stream
    assert not parse_fault_header("type=hang").mid_stream
    assert parse_fault_header("type=truncate").mid_stream
