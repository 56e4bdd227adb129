"""The response cache (contract section 3, "Cache"): what makes an entry, what is stored, how it
is replayed, the Cache-Control request directives, and the Redis backend, including an outage.

Texts carry the test's tag: the Redis tests share one Redis, and keys are content hashes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    EACH_MODE,
    PATHS,
    RESPONSES,
    Answer,
    Gateway,
    Gateways,
    ask,
    calls,
    mock_upstream,
    model,
    proxy_config,
    read_stream,
    reply_to,
    request_body,
    start_service_on,
    stop_service,
    stream_completed,
    stream_error_event,
    stream_text,
    unique,
    wait_for,
)

MEMORY = {"backend": "memory", "ttl_seconds": 300}
HIT, MISS, BYPASS = "HIT", "MISS", "BYPASS"

CHAT_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
RESPONSES_TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {}},
}

# Each key field of the contract, with two values that must make two different entries.
# "model", "stream", "stream_options" and "previous_response_id" are sent specially (`send`).
KEY_FIELDS: dict[str, dict[str, tuple[Any, Any]]] = {
    CHAT: {
        "model": ("cached", "cached-too"),
        "messages": ("the first text", "the second text"),
        "temperature": (0.2, 0.8),
        "top_p": (0.5, 0.9),
        "max_tokens": (50, 60),
        "max_completion_tokens": (50, 60),
        "tools": ([CHAT_TOOL], [{**CHAT_TOOL, "function": {"name": "other"}}]),
        "tool_choice": ("auto", "none"),
        "response_format": ({"type": "text"}, {"type": "json_object"}),
        "seed": (1, 2),
        "stop": (["zzz"], ["yyy"]),
        "n": (1, 2),
        "stream": (False, True),
        "stream_options": ({"include_usage": True}, {"include_usage": False}),
    },
    RESPONSES: {
        "model": ("cached", "cached-too"),
        "input": ("the first text", "the second text"),
        "instructions": ("be brief", "be thorough"),
        "previous_response_id": (0, 1),
        "temperature": (0.2, 0.8),
        "top_p": (0.5, 0.9),
        "max_output_tokens": (50, 60),
        "tools": ([RESPONSES_TOOL], [{**RESPONSES_TOOL, "name": "other"}]),
        "tool_choice": ("auto", "none"),
        "text": ({"format": {"type": "text"}}, {"format": {"type": "json_object"}}),
        "stream": (False, True),
    },
}
# Fields sent along with a key field, because the API refuses it alone: chat's `tool_choice`
# needs `tools`.
COMPANIONS: dict[tuple[str, str], dict[str, Any]] = {(CHAT, "tool_choice"): {"tools": [CHAT_TOOL]}}


def cached_gateway(
    gateways: Gateways, cache: dict[str, Any] | None = None, **retry: Any
) -> tuple[Gateway, str]:
    upstream = unique("cache")
    config = proxy_config(
        [mock_upstream(upstream)],
        [model("cached", [upstream]), model("cached-too", [upstream])],
        cache=cache or MEMORY,
        retry=retry or None,
    )
    return gateways.start(config), upstream


def assert_same_reply(answer: Answer, text: str) -> None:
    assert answer.status == 200, answer.error
    assert answer.text == reply_to(text)


@EACH_ENDPOINT
@EACH_MODE
def test_an_identical_request_is_served_from_the_cache(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways)
    sdk = gateway.sdk()
    text = f"remember this {tag}"

    first = ask(sdk, endpoint, "cached", text, stream=stream)
    second = ask(sdk, endpoint, "cached", text, stream=stream)

    assert_same_reply(first, text)
    assert_same_reply(second, text)
    assert (first.cache, first.attempts) == (MISS, 1)
    assert (second.cache, second.attempts) == (HIT, 0)
    assert second.usage == first.usage
    assert calls(mock_control, tag, upstream) == 1


def key_field_cases() -> Iterator[Any]:
    for endpoint, fields in KEY_FIELDS.items():
        for name, (one, other) in fields.items():
            yield pytest.param(endpoint, name, one, other, id=f"{endpoint}-{name}")


@pytest.mark.parametrize(("endpoint", "field", "one", "other"), list(key_field_cases()))
def test_a_different_value_of_any_key_field_is_a_different_entry(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    endpoint: str,
    field: str,
    one: Any,
    other: Any,
) -> None:
    gateway, upstream = cached_gateway(gateways)
    sdk = gateway.sdk()
    earlier: list[str] = []
    if field == "previous_response_id":
        # Two real responses of this upstream to continue from (they make entries of their own).
        for index in range(2):
            answer = ask(sdk, RESPONSES, "cached", f"earlier turn {index} {tag}")
            assert answer.id is not None
            earlier.append(answer.id)

    def send(value: Any) -> Answer:
        model_name, text, stream, params = "cached", f"the question {tag}", False, {}
        if field == "model":
            model_name = value
        elif field in ("messages", "input"):
            text = f"{value} {tag}"
        elif field == "stream":
            stream = value
        elif field == "stream_options":
            stream, params = True, {field: value}
        elif field == "previous_response_id":
            params = {field: earlier[value]}
        else:
            params = {field: value, **COMPANIONS.get((endpoint, field), {})}
        return ask(sdk, endpoint, model_name, text, stream=stream, **params)

    before = calls(mock_control, tag, upstream)
    first, again, different = send(one), send(one), send(other)

    assert all(answer.status == 200 for answer in (first, again, different))
    assert (first.cache, again.cache) == (MISS, HIT), "the same request is a hit"
    assert different.cache == MISS, f"a different {field} must not hit"
    assert calls(mock_control, tag, upstream) - before == 2


@pytest.mark.slow
def test_the_endpoint_is_part_of_the_key(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, upstream = cached_gateway(gateways)
    text = f"same body on both endpoints {tag}"
    # One body that both endpoints accept: only the endpoint tells the two requests apart.
    body = {"model": "cached", "messages": [{"role": "user", "content": text}], "input": text}
    http = gateway.http()
    chat = http.post(PATHS[CHAT], json=body)
    responses = http.post(PATHS[RESPONSES], json=body)
    assert (chat.status_code, responses.status_code) == (200, 200)
    assert chat.headers["x-switchyard-cache"] == MISS
    assert responses.headers["x-switchyard-cache"] == MISS
    assert responses.json()["object"] == "response", "not the chat completion replayed"
    assert calls(mock_control, tag, upstream) == 2


@EACH_ENDPOINT
@EACH_MODE
def test_user_metadata_and_request_id_are_not_part_of_the_key(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways)
    sdk = gateway.sdk()
    text = f"who asks does not matter {tag}"

    first = ask(
        sdk,
        endpoint,
        "cached",
        text,
        stream=stream,
        user="alice",
        metadata={"run": "1"},
        headers={"x-request-id": f"first-{tag}"},
    )
    second = ask(
        sdk,
        endpoint,
        "cached",
        text,
        stream=stream,
        user="bob",
        metadata={"run": "2"},
        headers={"x-request-id": f"second-{tag}"},
    )

    assert (first.cache, second.cache) == (MISS, HIT)
    assert_same_reply(second, text)
    # The hit answers this request: its own request id, not the stored one's.
    assert second.request_id == f"second-{tag}"
    assert calls(mock_control, tag, upstream) == 1


@pytest.mark.slow
def test_entries_expire_after_ttl_seconds(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, upstream = cached_gateway(gateways, {"backend": "memory", "ttl_seconds": 1})
    sdk = gateway.sdk()
    text = f"short lived {tag}"

    stored_at = time.monotonic()
    assert ask(sdk, CHAT, "cached", text).cache == MISS
    assert ask(sdk, CHAT, "cached", text).cache == HIT

    def expired() -> Answer | None:
        answer = ask(sdk, CHAT, "cached", text)
        assert answer.status == 200
        return answer if answer.cache != HIT else None

    after_expiry = wait_for(expired, what="the entry to expire", timeout=6, interval=0.05)
    assert after_expiry.cache == MISS
    assert time.monotonic() - stored_at >= 0.5, "expired long before its TTL"
    assert calls(mock_control, tag, upstream) == 2


def raw_stream(
    gateway: Gateway, endpoint: str, text: str, **params: Any
) -> tuple[httpx.Headers, str]:
    body = request_body(endpoint, "cached", text, stream=True, **params)
    response, raw = read_stream(gateway.http(), endpoint, body)
    assert response.status_code == 200
    return response.headers, raw


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [(CHAT, {}), (CHAT, {"stream_options": {"include_usage": True}}), (RESPONSES, {})],
    ids=["chat", "chat-with-usage", "responses"],
)
def test_a_completed_stream_is_replayed_as_the_same_stream(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    endpoint: str,
    params: dict[str, Any],
) -> None:
    gateway, upstream = cached_gateway(gateways)
    text = f"stream me twice {tag}"

    first_headers, first = raw_stream(gateway, endpoint, text, **params)
    second_headers, second = raw_stream(gateway, endpoint, text, **params)

    assert first_headers["x-switchyard-cache"] == MISS
    assert second_headers["x-switchyard-cache"] == HIT
    assert second_headers["content-type"].startswith("text/event-stream")
    assert stream_completed(endpoint, first)
    assert stream_text(endpoint, first) == reply_to(text)
    assert second == first, "the replay is the bytes the first client got"
    assert calls(mock_control, tag, upstream) == 1


@pytest.mark.parametrize("fault", ["disconnect", "stream_error"])
@EACH_ENDPOINT
def test_a_cut_stream_is_never_stored(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, fault: str, endpoint: str
) -> None:
    gateway, upstream = cached_gateway(gateways)
    mock_control.add_fault({"type": fault, "after_chunks": 2}, times=1, upstream=upstream, tag=tag)
    text = f"cut me short please {tag}"

    _, cut = raw_stream(gateway, endpoint, text)
    assert not stream_completed(endpoint, cut)
    assert stream_error_event(endpoint, cut) is not None

    headers, whole = raw_stream(gateway, endpoint, text)
    assert headers["x-switchyard-cache"] == MISS, "the cut stream must not have been stored"
    assert stream_text(endpoint, whole) == reply_to(text)
    headers, _ = raw_stream(gateway, endpoint, text)
    assert headers["x-switchyard-cache"] == HIT
    assert calls(mock_control, tag, upstream) == 2


@EACH_ENDPOINT
@EACH_MODE
def test_an_error_is_never_stored(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways, max_attempts=1)
    mock_control.add_fault({"type": "status", "status": 500}, times=1, upstream=upstream, tag=tag)
    sdk = gateway.sdk()
    text = f"fails once {tag}"

    assert ask(sdk, endpoint, "cached", text, stream=stream).status == 500
    retried = ask(sdk, endpoint, "cached", text, stream=stream)
    assert_same_reply(retried, text)
    assert retried.cache == MISS
    assert ask(sdk, endpoint, "cached", text, stream=stream).cache == HIT
    assert calls(mock_control, tag, upstream) == 2


@EACH_ENDPOINT
@EACH_MODE
def test_no_cache_skips_the_lookup_but_stores_the_fresh_answer(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways)
    sdk = gateway.sdk()
    text = f"always fresh {tag}"
    no_cache = {"cache-control": "no-cache"}

    fresh = ask(sdk, endpoint, "cached", text, stream=stream, headers=no_cache)
    assert_same_reply(fresh, text)
    assert fresh.cache != HIT
    assert ask(sdk, endpoint, "cached", text, stream=stream).cache == HIT, "it was stored"
    assert calls(mock_control, tag, upstream) == 1

    again = ask(sdk, endpoint, "cached", text, stream=stream, headers=no_cache)
    assert_same_reply(again, text)
    assert again.cache != HIT, "an entry exists, but no-cache skips the lookup"
    assert calls(mock_control, tag, upstream) == 2


@EACH_ENDPOINT
@EACH_MODE
def test_no_store_prevents_the_write(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways)
    sdk = gateway.sdk()
    text = f"do not keep this {tag}"

    private = ask(
        sdk, endpoint, "cached", text, stream=stream, headers={"cache-control": "no-store"}
    )
    assert_same_reply(private, text)
    assert private.cache != HIT
    assert ask(sdk, endpoint, "cached", text, stream=stream).cache == MISS, "nothing was stored"
    assert ask(sdk, endpoint, "cached", text, stream=stream).cache == HIT
    assert calls(mock_control, tag, upstream) == 2


@EACH_ENDPOINT
@EACH_MODE
def test_the_off_backend_bypasses_every_request(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, upstream = cached_gateway(gateways, {"backend": "off"})
    sdk = gateway.sdk()
    text = f"no cache here {tag}"
    answers = [ask(sdk, endpoint, "cached", text, stream=stream) for _ in range(2)]
    assert [answer.cache for answer in answers] == [BYPASS, BYPASS]
    assert calls(mock_control, tag, upstream) == 2


def test_the_memory_backend_holds_at_most_max_entries(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, _ = cached_gateway(gateways, {"backend": "memory", "max_entries": 2})
    sdk = gateway.sdk()
    texts = [f"entry {index} {tag}" for index in range(3)]
    assert [ask(sdk, CHAT, "cached", text).cache for text in texts] == [MISS] * 3
    # Three entries were made, but only two may be held: whatever the eviction order, at most
    # two of the three can hit now.
    replayed = [ask(sdk, CHAT, "cached", text).cache for text in texts]
    assert replayed.count(HIT) <= 2, replayed


# --------------------------------------------------------------------------- Redis


def redis_cache(port: str = "${redis.port}") -> dict[str, Any]:
    return {"backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0", "ttl_seconds": 300}


@EACH_ENDPOINT
@EACH_MODE
def test_the_redis_backend_shares_entries_between_proxies(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    upstream = unique("redis-shared")
    config = proxy_config(
        [mock_upstream(upstream)], [model("cached", [upstream])], cache=redis_cache()
    )
    writer, reader = gateways.start(config), gateways.start(config)
    text = f"kept in redis {tag}"

    first = ask(writer.sdk(), endpoint, "cached", text, stream=stream)
    second = ask(reader.sdk(), endpoint, "cached", text, stream=stream)

    assert first.cache == MISS
    # Another process's memory cannot hold it: this hit came through Redis.
    assert second.cache == HIT
    assert_same_reply(second, text)
    assert calls(mock_control, tag, upstream) == 1


@pytest.mark.slow
def test_a_redis_outage_degrades_to_bypass_and_caching_resumes(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    upstream = unique("redis-outage")
    gateway = gateways.start(
        proxy_config([mock_upstream(upstream)], [model("cached", [upstream])], cache=redis_cache()),
        own_redis=True,
    )
    sdk = gateway.sdk()
    text = f"through an outage {tag}"
    assert ask(sdk, CHAT, "cached", text).cache == MISS
    assert ask(sdk, CHAT, "cached", text).cache == HIT

    redis_port = stop_service(gateway, "redis")
    for index in range(3):
        answer = ask(sdk, CHAT, "cached", text, stream=index == 1)
        assert_same_reply(answer, text)
        assert answer.cache == BYPASS
    assert gateway.metrics().total("switchyard_cache_errors_total") >= 1
    wait_for(
        lambda: "WARN" in (log := gateway.log_text()) and "redis" in log.lower(),
        what="the outage to be logged as a warning",
    )

    start_service_on(gateway, "redis", redis_port)
    text_after = f"after the outage {tag}"
    resumed = wait_for(
        lambda: (answer := ask(sdk, CHAT, "cached", text_after)).cache != BYPASS and answer,
        what="caching to resume once Redis is back",
        timeout=15,
        interval=0.1,
    )
    assert resumed.cache == MISS, "Redis came back empty"
    assert ask(sdk, CHAT, "cached", text_after).cache == HIT
