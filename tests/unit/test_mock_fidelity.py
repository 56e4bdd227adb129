"""The mock upstream on the wire: the official SDK must parse everything it sends, and the raw
bytes must follow docs/contracts.md section 1 (SSE framing, faults, inspection and control)."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from harness.pytest.mock_wire import (
    cancelled_entry,
    chat_body,
    chat_payloads,
    log_entries,
    response_events,
    running_mock,
    sdk,
    wire_events,
)
from harness.runtime.poll import wait_until


@pytest.fixture
def upstream(tag: str) -> str:
    """An upstream name no other test uses, so counters and rules cannot interfere."""
    return "up-" + tag


def read_until_broken(http: httpx.Client, path: str, body: dict[str, Any], **kw: Any) -> bytes:
    """The bytes of a streamed body that must end in a broken connection."""
    received = bytearray()
    with pytest.raises(httpx.TransportError), http.stream("POST", path, json=body, **kw) as reply:
        assert reply.status_code == 200
        for chunk in reply.iter_raw():
            received += chunk
    return bytes(received)


def add_rule(http: httpx.Client, **rule: Any) -> str:
    reply = http.post("/_mock/faults", json=rule)
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


# --------------------------------------------------------------------------- chat completions


def test_chat_completion_parses_with_the_sdk(mock_url, upstream):
    raw = sdk(mock_url, upstream).chat.completions.with_raw_response.create(
        model="mock-chat",
        messages=[
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "hello world"},
        ],
    )
    assert raw.headers["x-mock-upstream"] == upstream
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "mock-chat"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "reply 1: hello world"
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    assert completion.usage.total_tokens == 8
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_counts_turns_content_parts_and_truncates_to_max_tokens(mock_url, upstream):
    completion = sdk(mock_url, upstream).chat.completions.create(
        model="any-model-name",
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "reply 1: one"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "two three"},
                    {"type": "text", "text": "four"},
                ],
            },
        ],
        max_completion_tokens=4,
    )
    assert completion.model == "any-model-name"
    assert completion.choices[0].message.content == "reply 2: two three"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens == 1 + 3 + 3
    assert completion.usage.completion_tokens == 4


def test_chat_stream_parses_with_the_sdk(mock_url, upstream):
    stream = sdk(mock_url, upstream).chat.completions.create(
        **chat_body("streamed words here"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "reply 1: streamed words here"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5


def test_chat_stream_wire_framing_without_usage(http, upstream):
    reply = http.post(f"/{upstream}/v1/chat/completions", json=chat_body("a b", stream=True))
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-mock-upstream"] == upstream
    events = wire_events(reply.text)
    assert events[-1] == "data: [DONE]"
    chunks = chat_payloads(events)
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "reply"},
        {"content": " 1:"},
        {"content": " a"},
        {"content": " b"},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks][-2:] == [None, "stop"]
    assert {(chunk["id"], chunk["created"], chunk["model"]) for chunk in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "mock-chat")
    }
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_chat_stream_wire_usage_chunk_only_with_include_usage(http, upstream):
    body = chat_body("a b", stream=True, stream_options={"include_usage": True}, max_tokens=2)
    events = wire_events(http.post(f"/{upstream}/v1/chat/completions", json=body).text)
    chunks = chat_payloads(events)
    assert events[-1] == "data: [DONE]"
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 2
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert chunks[-1]["usage"]["total_tokens"] == 4


# --------------------------------------------------------------------------- responses


def test_response_parses_with_the_sdk(mock_url, upstream):
    raw = sdk(mock_url, upstream).responses.with_raw_response.create(
        model="mock-chat", input="hello there", instructions="be terse", metadata={"k": "v"}
    )
    assert raw.headers["x-mock-upstream"] == upstream
    response = raw.parse()
    assert isinstance(response, Response)
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output[0].id.startswith("msg_")
    assert response.output_text == "reply 1: hello there"
    assert response.instructions == "be terse"
    assert response.metadata == {"k": "v"}
    assert response.incomplete_details is None
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens == 4
    assert response.usage.total_tokens == 8
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_response_limited_by_max_output_tokens_is_incomplete(mock_url, upstream):
    response = sdk(mock_url, upstream).responses.create(
        model="mock-chat", input="one two three", max_output_tokens=3
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "reply 1: one"
    assert response.max_output_tokens == 3


def test_response_stream_helper_accumulates_the_reply(mock_url, upstream):
    client = sdk(mock_url, upstream)
    with client.responses.stream(model="mock-chat", input="stream me") as stream:
        event_types = [event.type for event in stream]
        final = stream.get_final_response()
    assert event_types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "reply 1: stream me"
    assert final.usage.output_tokens == 4


def test_response_stream_wire_events_and_sequence_numbers(http, upstream):
    body = {"model": "mock-chat", "input": "x y z", "stream": True, "max_output_tokens": 4}
    reply = http.post(f"/{upstream}/v1/responses", json=body)
    assert reply.headers["x-mock-upstream"] == upstream
    assert "[DONE]" not in reply.text
    events = response_events(reply.text)
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert [delta["delta"] for delta in deltas] == ["reply", " 1:", " x", " y"]
    assert all(delta["logprobs"] == [] for delta in deltas)
    assert all((delta["output_index"], delta["content_index"]) == (0, 0) for delta in deltas)
    item_id = events[2][1]["item"]["id"]
    assert {delta["item_id"] for delta in deltas} == {item_id}
    name, last = events[-1]
    assert name == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["id"] == events[0][1]["response"]["id"]
    assert events[-4][1]["text"] == "reply 1: x y"


def test_previous_response_id_continues_the_stored_conversation(mock_url, upstream):
    client = sdk(mock_url, upstream)
    first = client.responses.create(model="mock-chat", input="first words", instructions="sys")
    second = client.responses.create(
        model="mock-chat",
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "and more"}]}],
    )
    assert second.output_text == "reply 2: and more"
    assert second.previous_response_id == first.id
    # Earlier input and output count, earlier instructions do not carry over.
    assert second.usage.input_tokens == 2 + 4 + 2
    third = client.responses.create(model="mock-chat", previous_response_id=second.id, input="z")
    assert third.output_text == "reply 3: z"


def test_streamed_responses_are_stored_too(mock_url, upstream):
    client = sdk(mock_url, upstream)
    with client.responses.stream(model="mock-chat", input="one") as stream:
        first = stream.get_final_response()
    assert (
        client.responses.create(
            model="mock-chat", previous_response_id=first.id, input="two"
        ).output_text
        == "reply 2: two"
    )


def test_unknown_previous_response_id_is_404(mock_url, upstream):
    client = sdk(mock_url, upstream)
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="mock-chat", previous_response_id="resp_nope", input="x")
    assert raised.value.code == "previous_response_not_found"
    assert raised.value.param == "previous_response_id"
    assert raised.value.response.headers["x-mock-upstream"] == upstream


def test_responses_of_one_upstream_are_unknown_to_another(mock_url, upstream):
    first = sdk(mock_url, upstream).responses.create(model="mock-chat", input="x")
    with pytest.raises(openai.NotFoundError):
        sdk(mock_url, upstream + "-other").responses.create(
            model="mock-chat", previous_response_id=first.id, input="y"
        )


# --------------------------------------------------------------------------- models and errors


def test_models_list_parses_with_the_sdk(mock_url, upstream):
    models = list(sdk(mock_url, upstream).models.list())
    assert models
    assert all(isinstance(model, Model) for model in models)
    assert {model.owned_by for model in models} == {"mock"}
    assert "mock-chat" in {model.id for model in models}


@pytest.mark.parametrize(
    ("path", "content", "param"),
    [
        ("chat/completions", b"{not json", None),
        ("chat/completions", b"[1, 2]", None),
        ("chat/completions", b'{"messages": []}', "model"),
        ("chat/completions", b'{"model": "m"}', "messages"),
        ("chat/completions", b'{"model": "m", "messages": "hi"}', "messages"),
        ("chat/completions", b'{"model": "m", "messages": [], "max_tokens": "9"}', "max_tokens"),
        ("responses", b'{"model": "m"}', "input"),
        ("responses", b'{"model": "m", "input": 7}', "input"),
    ],
)
def test_invalid_requests_get_400_invalid_request_error(http, upstream, path, content, param):
    reply = http.post(f"/{upstream}/v1/{path}", content=content)
    assert reply.status_code == 400
    assert reply.headers["x-mock-upstream"] == upstream
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert log_entries(http, upstream=upstream)[-1]["outcome"] == "error"


def test_sdk_maps_a_missing_field_to_bad_request(mock_url, upstream):
    with pytest.raises(openai.BadRequestError):
        sdk(mock_url, upstream).chat.completions.create(model="mock-chat", messages=None)


def test_unknown_endpoint_is_an_openai_404_naming_the_upstream(http, upstream):
    reply = http.post(f"/{upstream}/v1/embeddings", json={"model": "m", "input": "x"})
    assert reply.status_code == 404
    assert reply.headers["x-mock-upstream"] == upstream
    assert reply.json()["error"]["code"] == "unknown_url"


CHAT_ONLY = {
    # endpoint: status a chat-only upstream answers (a server without the Responses API)
    "chat/completions": 200,
    "models": 200,
    "responses": 404,
}


@pytest.mark.parametrize("endpoint", CHAT_ONLY)
def test_a_chat_only_upstream_has_no_responses_api(http, upstream, endpoint):
    path = f"/chat-only/{upstream}/v1/{endpoint}"
    if endpoint == "models":
        reply = http.get(path)
    else:
        body = chat_body() if endpoint == "chat/completions" else {"model": "m", "input": "hi"}
        reply = http.post(path, json=body)
    assert reply.status_code == CHAT_ONLY[endpoint], reply.text
    assert reply.headers["x-mock-upstream"] == upstream
    if reply.status_code == 404:
        assert reply.json()["error"]["code"] == "unknown_url"
    assert log_entries(http, upstream=upstream)[-1]["path"] == path


def test_plain_v1_is_the_default_upstream(http):
    reply = http.post("/v1/chat/completions", json=chat_body())
    assert reply.status_code == 200
    assert reply.headers["x-mock-upstream"] == "default"


def test_health(http):
    reply = http.get("/health")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("model", "error_class", "status"),
    [
        ("fault-429", openai.RateLimitError, 429),
        ("fault-500", openai.InternalServerError, 500),
        ("fault-503", openai.InternalServerError, 503),
    ],
)
def test_status_fault_models_raise_the_sdk_errors(mock_url, upstream, model, error_class, status):
    with pytest.raises(error_class) as raised:
        sdk(mock_url, upstream).chat.completions.create(**{**chat_body(), "model": model})
    assert raised.value.status_code == status
    assert raised.value.response.headers["x-mock-upstream"] == upstream
    assert raised.value.type == ("rate_limit_error" if status == 429 else "server_error")


def test_status_fault_header_sets_retry_headers_and_message(http, upstream):
    reply = http.post(
        f"/{upstream}/v1/responses",
        json={"model": "mock-chat", "input": "x"},
        headers={
            "x-mock-fault": "type=status;status=429;retry_after=3;retry_after_ms=2500;"
            "message=slow down"
        },
    )
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "3"
    assert reply.headers["retry-after-ms"] == "2500"
    assert reply.headers["x-mock-upstream"] == upstream
    assert reply.json() == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert log_entries(http, upstream=upstream)[-1]["outcome"] == "fault:status"


def test_invalid_fault_header_is_a_400(http, upstream):
    reply = http.post(
        f"/{upstream}/v1/chat/completions", json=chat_body(), headers={"x-mock-fault": "type=boom"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_mock_fault"


def test_reset_fault_is_a_connection_error(mock_url, http, upstream):
    with pytest.raises(openai.APIConnectionError) as raised:
        sdk(mock_url, upstream).chat.completions.create(**{**chat_body(), "model": "fault-reset"})
    assert not isinstance(raised.value, openai.APITimeoutError)
    entry = log_entries(http, upstream=upstream)[-1]
    assert (entry["status"], entry["outcome"]) == (None, "fault:reset")


def test_reset_fault_sends_no_response_at_all(http, upstream):
    with pytest.raises(httpx.TransportError):
        http.get(f"/{upstream}/v1/models", headers={"x-mock-fault": "type=reset"})


def test_hang_fault_times_out_and_is_logged_as_cancelled(mock_url, http, upstream):
    client = sdk(mock_url, upstream, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(**{**chat_body(), "model": "fault-hang"})
    entry = cancelled_entry(http, upstream)
    assert entry["model"] == "fault-hang"
    assert entry["status"] is None


def test_disconnect_fault_cuts_the_stream_after_n_content_chunks(http, upstream):
    received = read_until_broken(
        http,
        f"/{upstream}/v1/chat/completions",
        chat_body("a b c d", stream=True),
        headers={"x-mock-fault": "type=disconnect;after_chunks=3"},
    )
    events = wire_events(received.decode())
    assert "data: [DONE]" not in events
    chunks = chat_payloads(events)
    assert [chunk["choices"][0]["delta"].get("content") for chunk in chunks] == [
        "",
        "reply",
        " 1:",
        " a",
    ]
    entry = log_entries(http, upstream=upstream)[-1]
    assert (entry["status"], entry["outcome"]) == (200, "fault:disconnect")


def test_disconnect_fault_on_a_responses_stream_is_an_sdk_connection_error(mock_url, upstream):
    client = sdk(mock_url, upstream)
    deltas = []
    with (
        pytest.raises(openai.APIConnectionError),
        client.responses.stream(model="fault-disconnect", input="a b c") as stream,
    ):
        deltas.extend(event.delta for event in stream if event.type.endswith(".delta"))
    assert deltas == ["reply", " 1:"]


def test_disconnect_fault_without_stream_is_a_reset(http, upstream):
    with pytest.raises(httpx.TransportError):
        http.post(
            f"/{upstream}/v1/chat/completions", json={**chat_body(), "model": "fault-disconnect"}
        )
    assert log_entries(http, upstream=upstream)[-1]["outcome"] == "fault:disconnect"


def test_malformed_chunk_is_injected_and_the_stream_still_ends_normally(http, upstream):
    reply = http.post(
        f"/{upstream}/v1/chat/completions",
        json={**chat_body("a b", stream=True), "model": "fault-malformed"},
    )
    events = wire_events(reply.text)
    assert events.index("data: {not json") == 3  # role chunk, then 2 content chunks
    events.remove("data: {not json")
    assert events[-1] == "data: [DONE]"
    text = "".join(
        chunk["choices"][0]["delta"].get("content", "") for chunk in chat_payloads(events)
    )
    assert text == "reply 1: a b"
    assert log_entries(http, upstream=upstream)[-1]["outcome"] == "fault:malformed_chunk"


def test_chat_stream_error_ends_the_stream_with_an_error_event(mock_url, http, upstream):
    body = {**chat_body("a b c", stream=True), "model": "fault-stream-error"}
    events = wire_events(http.post(f"/{upstream}/v1/chat/completions", json=body).text)
    assert "data: [DONE]" not in events
    payloads = chat_payloads(events)
    assert len(payloads) == 4
    assert payloads[-1] == {
        "error": {
            "message": payloads[-1]["error"]["message"],
            "type": "server_error",
            "param": None,
            "code": "stream_error",
        }
    }
    with pytest.raises(openai.APIError):
        list(sdk(mock_url, upstream).chat.completions.create(**body))


def test_responses_stream_error_is_an_error_event_in_sequence(http, upstream):
    reply = http.post(
        f"/{upstream}/v1/responses",
        json={"model": "mock-chat", "input": "a b c", "stream": True},
        headers={"x-mock-fault": "type=stream_error;after_chunks=1"},
    )
    events = response_events(reply.text)
    assert [name for name, _ in events][-2:] == ["response.output_text.delta", "error"]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    error = events[-1][1]
    assert (error["type"], error["code"], error["param"]) == ("error", "stream_error", None)
    assert error["message"]


def test_mid_stream_fault_beyond_the_reply_fires_after_the_last_word(http, upstream):
    reply = http.post(
        f"/{upstream}/v1/chat/completions",
        json=chat_body("a", stream=True),
        headers={"x-mock-fault": "type=stream_error;after_chunks=50"},
    )
    payloads = chat_payloads(wire_events(reply.text))
    assert "error" in payloads[-1]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads[:-1]) == (
        "reply 1: a"
    )


def test_client_leaving_mid_stream_is_logged_as_cancelled(http, upstream):
    with http.stream(
        "POST",
        f"/{upstream}/v1/chat/completions",
        json=chat_body("a b c d", stream=True),
        headers={"x-mock-fault": "type=latency;between_chunks_ms=200"},
    ) as reply:
        assert next(reply.iter_raw()).startswith(b"data: ")
    # Leaving the block with the body unread closes the connection.
    entry = cancelled_entry(http, upstream)
    assert entry["status"] == 200


def test_latency_fault_delays_a_normal_answer(http, upstream):
    started = time.monotonic()
    reply = http.post(
        f"/{upstream}/v1/chat/completions",
        json=chat_body("a b", stream=True),
        headers={"x-mock-fault": "type=latency;first_byte_ms=150;between_chunks_ms=30"},
    )
    elapsed = time.monotonic() - started
    events = wire_events(reply.text)
    assert events[-1] == "data: [DONE]"
    # A lower bound only: the mock cannot answer before its own sleeps are over.
    assert elapsed >= 0.150 + 0.030 * (len(events) - 1)
    assert log_entries(http, upstream=upstream)[-1]["outcome"] == "fault:latency"


# --------------------------------------------------------------------------- fault rules


def test_rule_answers_the_next_n_requests_then_lets_them_through(mock_url, http, upstream):
    rule = {"type": "status", "status": 429, "retry_after": 1}
    rule_id = add_rule(http, fault=rule, times=2, upstream=upstream)
    client = sdk(mock_url, upstream)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(**chat_body())
        assert raised.value.response.headers["retry-after"] == "1"
    assert client.chat.completions.create(**chat_body()).choices[0].message.content
    assert rule_id not in {r["id"] for r in http.get("/_mock/faults").json()["faults"]}


def test_rules_are_scoped_by_tag_model_and_path(mock_url, http, upstream, tag):
    add_rule(http, fault={"type": "status", "status": 500}, tag=tag, model="m2", path="responses")
    untagged = sdk(mock_url, upstream)
    tagged = sdk(mock_url, upstream, tag=tag)
    assert untagged.responses.create(model="m2", input="x").status == "completed"
    assert tagged.responses.create(model="m1", input="x").status == "completed"
    assert tagged.chat.completions.create(**{**chat_body(), "model": "m2"}).choices
    remaining = [r for r in http.get("/_mock/faults").json()["faults"] if r.get("tag") == tag]
    assert remaining[0]["times"] == 1
    assert remaining[0]["fault"] == {"type": "status", "status": 500}
    with pytest.raises(openai.InternalServerError):
        tagged.responses.create(model="m2", input="x")
    assert not [r for r in http.get("/_mock/faults").json()["faults"] if r.get("tag") == tag]


def test_header_fault_wins_over_model_name_and_rules(http, upstream):
    add_rule(http, fault={"type": "reset"}, upstream=upstream)
    reply = http.post(
        f"/{upstream}/v1/chat/completions",
        json={**chat_body(), "model": "fault-500"},
        headers={"x-mock-fault": "type=status;status=503"},
    )
    assert reply.status_code == 503
    reply = http.post(
        f"/{upstream}/v1/chat/completions", json={**chat_body(), "model": "fault-429"}
    )
    assert reply.status_code == 429
    # Neither request consumed the rule: the next plain request does.
    with pytest.raises(httpx.TransportError):
        http.post(f"/{upstream}/v1/chat/completions", json=chat_body())


def test_invalid_rule_is_a_400(http):
    reply = http.post("/_mock/faults", json={"fault": {"type": "status"}, "times": 1})
    assert reply.status_code == 400
    assert "status" in reply.json()["error"]["message"]


# --------------------------------------------------------------------------- inspection and control


def test_request_log_records_tag_headers_body_and_redacts_secrets(http, upstream, tag):
    http.post(
        f"/{upstream}/v1/chat/completions",
        json=chat_body("logged", stream=True),
        headers={
            "Authorization": "Bearer sk-secret",
            "Api-Key": "k2",
            "X-Mock-Tag": tag,
            "X-Custom": "kept",
        },
    )
    (entry,) = log_entries(http, tag=tag)
    assert entry["upstream"] == upstream
    assert (entry["method"], entry["path"]) == ("POST", f"/{upstream}/v1/chat/completions")
    assert (entry["model"], entry["tag"], entry["stream"]) == ("mock-chat", tag, True)
    assert (entry["status"], entry["outcome"]) == (200, "ok")
    assert entry["body"] == chat_body("logged", stream=True)
    assert entry["headers"]["x-custom"] == "kept"
    digest = hashlib.sha256(b"Bearer sk-secret").hexdigest()[:12]
    assert entry["headers"]["authorization"] == f"<redacted sha256:{digest}>"
    assert "k2" not in entry["headers"]["api-key"]
    assert isinstance(entry["seq"], int)
    assert isinstance(entry["time"], float)


def test_request_log_is_oldest_first_and_limited(http, upstream):
    for word in ("one", "two", "three"):
        http.post(f"/{upstream}/v1/chat/completions", json=chat_body(word))
    entries = log_entries(http, upstream=upstream, limit=2)
    assert [entry["body"]["messages"][0]["content"] for entry in entries] == ["two", "three"]
    assert entries[0]["seq"] < entries[1]["seq"]


def test_counts_by_upstream_kind_and_tag(mock_url, http, upstream, tag):
    client = sdk(mock_url, upstream, tag=tag)
    client.chat.completions.create(**chat_body())
    client.responses.create(model="mock-chat", input="x")
    client.models.list()
    sdk(mock_url, upstream).chat.completions.create(**chat_body())
    assert http.get("/_mock/counts", params={"tag": tag}).json() == {
        "total": 3,
        "upstreams": {upstream: {"total": 3, "chat": 1, "responses": 1, "models": 1}},
    }
    assert http.get("/_mock/counts").json()["upstreams"][upstream]["chat"] == 2


def test_reset_by_tag_clears_only_that_tags_log_counts_and_rules(http, upstream, tag):
    other = tag + "-other"
    for each in (tag, other):
        http.post(
            f"/{upstream}/v1/chat/completions", json=chat_body(), headers={"x-mock-tag": each}
        )
        add_rule(http, fault={"type": "hang"}, tag=each)
    assert http.post("/_mock/reset", json={"tag": tag}).status_code == 200
    assert log_entries(http, tag=tag) == []
    assert http.get("/_mock/counts", params={"tag": tag}).json()["total"] == 0
    assert len(log_entries(http, tag=other)) == 1
    rule_tags = [rule.get("tag") for rule in http.get("/_mock/faults").json()["faults"]]
    assert tag not in rule_tags
    assert other in rule_tags
    http.post("/_mock/reset", json={"tag": other})


def test_reset_without_selector_clears_everything():
    with running_mock() as (url, _process), httpx.Client(base_url=url) as http:
        http.post("/a/v1/chat/completions", json=chat_body())
        add_rule(http, fault={"type": "hang"})
        assert http.post("/_mock/reset").status_code == 200
        assert log_entries(http) == []
        assert http.get("/_mock/counts").json() == {"total": 0, "upstreams": {}}
        assert http.get("/_mock/faults").json() == {"faults": []}


# --------------------------------------------------------------------------- process


def test_port_file_holds_the_port_and_sigterm_exits_0_despite_a_hanging_request():
    with running_mock() as (url, process):
        assert process.spec.port_file is not None
        assert process.spec.port_file.read_text() == url.rsplit(":", 1)[1] + "\n"
        outcome: list[BaseException] = []

        def hang() -> None:
            try:
                httpx.post(
                    f"{url}/v1/chat/completions",
                    json={**chat_body(), "model": "fault-hang"},
                    timeout=30,
                )
            except httpx.TransportError as error:
                outcome.append(error)

        client = threading.Thread(target=hang)
        client.start()
        with httpx.Client(base_url=url) as http:
            wait_until(lambda: log_entries(http), what="the hanging request's entry", timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait_exit(timeout=10) == 0
        client.join(timeout=10)
        assert outcome, "the hanging request should end without an answer"
    assert f"mock listening on {url}" in process.spec.log_file.read_text()


# --------------------------------------------------------------------------- the SDK's own types


class Weather(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    unit: Literal["c", "f"]
    days: int


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str
    sure: bool


CHUNK = ChatCompletionChunk.model_validate
RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent).validate_python
WEATHER_TOOL = openai.pydantic_function_tool(Weather, name="get_weather")
WEATHER_RESPONSES_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": WEATHER_TOOL["function"]["parameters"],
    "strict": True,
}
VERDICT_SCHEMA = {**Verdict.model_json_schema(), "additionalProperties": False}
# (id, chat fields, Responses fields): tool calls, structured output, refusals.
SHAPES = [
    pytest.param(
        {"messages": [{"role": "user", "content": "explain get_weather"}], "tools": [WEATHER_TOOL]},
        {"input": "explain get_weather", "tools": [WEATHER_RESPONSES_TOOL]},
        id="tool-calls",
    ),
    pytest.param(
        {
            "messages": [{"role": "user", "content": "judge"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
            },
        },
        {
            "input": "judge",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "verdict",
                    "schema": VERDICT_SCHEMA,
                    "strict": True,
                }
            },
        },
        id="structured-output",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "please refuse"}]},
        {"input": "please refuse"},
        id="refusal",
    ),
]


@pytest.mark.parametrize(("chat", "responses"), SHAPES)
def test_every_wire_object_validates_as_the_sdks_type(http, upstream, chat, responses):
    """Whole answers and every raw stream event, through the SDK's pydantic types (strict
    about missing or mistyped fields)."""
    path = f"/{upstream}/v1/chat/completions"
    ChatCompletion.model_validate(http.post(path, json={"model": "m", **chat}).json())
    body = {"model": "m", **chat, "stream": True, "stream_options": {"include_usage": True}}
    chunks = [
        CHUNK(payload) for payload in chat_payloads(wire_events(http.post(path, json=body).text))
    ]
    assert chunks[-1].usage is not None
    path = f"/{upstream}/v1/responses"
    Response.model_validate(http.post(path, json={"model": "m", **responses}).json())
    reply = http.post(path, json={"model": "m", **responses, "stream": True})
    raw_events = [data for _, data in response_events(reply.text)]
    events = [RESPONSE_EVENT(data) for data in raw_events]
    assert events[-1].type == "response.completed"
    Response.model_validate(raw_events[-1]["response"])


def test_the_sdk_types_reject_a_payload_missing_a_required_field(http, upstream):
    chunk = chat_payloads(
        wire_events(http.post(f"/{upstream}/v1/chat/completions", json=chat_body(stream=True)).text)
    )[0]
    del chunk["choices"][0]["index"]
    with pytest.raises(ValidationError):
        CHUNK(chunk)
    body = {"model": "m", "input": "get_weather", "tools": [WEATHER_RESPONSES_TOOL], "stream": True}
    events = response_events(http.post(f"/{upstream}/v1/responses", json=body).text)
    [(_, done)] = [e for e in events if e[0] == "response.function_call_arguments.done"]
    del done["item_id"]
    with pytest.raises(ValidationError):
        RESPONSE_EVENT(done)


def test_chat_stream_splits_a_call_like_the_api(mock_url, upstream):
    client = sdk(mock_url, upstream)
    body = {"model": "m", "messages": [{"role": "user", "content": "get_weather"}]}
    chunks = list(client.chat.completions.create(**body, tools=[WEATHER_TOOL], stream=True))
    deltas = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas[0].id.startswith("call_")
    assert (deltas[0].function.name, deltas[0].function.arguments) == ("get_weather", "")
    assert len(deltas) > 2
    assert all(d.id is None and d.function.name is None for d in deltas[1:])
    assert all(len(d.function.arguments) <= 8 for d in deltas[1:])
    arguments = "".join(d.function.arguments for d in deltas)
    assert Weather.model_validate_json(arguments) == Weather(city="city", unit="c", days=1)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chat_parse_gives_the_parsed_output_refusal_and_arguments(mock_url, upstream, stream):
    client = sdk(mock_url, upstream)

    def parse(text: str, **options: Any) -> Any:
        messages = [{"role": "user", "content": text}]
        if not stream:
            return client.chat.completions.parse(model="m", messages=messages, **options)
        with client.chat.completions.stream(model="m", messages=messages, **options) as events:
            return events.get_final_completion()

    message = parse("judge", response_format=Verdict).choices[0].message
    assert message.parsed == Verdict(answer="answer", sure=True)
    message = parse("I refuse", response_format=Verdict).choices[0].message
    assert (message.parsed, message.refusal) == (None, "I refuse: I refuse")
    message = parse("get_weather", tools=[WEATHER_TOOL]).choices[0].message
    [call] = message.tool_calls or []
    assert call.function.parsed_arguments == Weather(city="city", unit="c", days=1)  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_responses_parse_gives_the_parsed_output_and_arguments(mock_url, upstream, stream):
    client = sdk(mock_url, upstream)

    def parse(text: str, **options: Any) -> Any:
        if not stream:
            return client.responses.parse(model="m", input=text, **options)
        with client.responses.stream(model="m", input=text, **options) as events:
            return events.get_final_response()

    assert parse("judge", text_format=Verdict).output_parsed == Verdict(answer="answer", sure=True)
    response = parse("explain get_weather", tools=[WEATHER_RESPONSES_TOOL])
    message, call = response.output
    assert message.content[0].text == "calling get_weather"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert Weather.model_validate_json(call.arguments) == Weather(city="city", unit="c", days=1)
    refusal = parse("refuse it").output[0].content[0]
    assert (refusal.type, refusal.refusal) == ("refusal", "I refuse: refuse it")


def test_responses_stream_events_of_calls_and_refusals(mock_url, upstream):
    client = sdk(mock_url, upstream)
    with client.responses.stream(
        model="m", input="explain get_weather", tools=[WEATHER_RESPONSES_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    call = final.output[1]
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type) for e in added] == [(0, "message"), (1, "function_call")]
    assert (added[1].item.arguments, added[1].item.status) == ("", "in_progress")
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert {(e.item_id, e.output_index) for e in deltas} == {(call.id, 1)}
    assert "".join(e.delta for e in deltas) == call.arguments
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == call.arguments
    with client.responses.stream(model="m", input="refuse") as stream:
        types = [e.type for e in stream]
    assert types[3:7] == [
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.delta",
    ]
    assert "response.refusal.done" in types
