"""What the proxy holds in memory is bounded.

For one upstream answer (contract section 2): a whole body (an answer or an error) beyond the
upstream's `max_body_bytes` is a 502 `upstream_body_too_large`, and a stream event beyond its
`max_event_bytes` ends the stream with the error event `upstream_event_too_large`; on chat,
native Responses and Responses translated onto chat alike. The proxy stays up and answers the
next request; each request is recorded once.

For the memory cache (section 3, "Cache"): `cache.max_bytes` bounds what it holds; an answer
larger than it is not cached, and evicts nothing. For the response store: a long
`previous_response_id` chain continues whole while its oldest responses are evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    ask,
    mock_upstream,
    model,
    proxy_config,
    read_stream,
    records_of,
    reply_to,
    request_body,
    stream_completed,
    stream_error_event,
    stream_text,
    unique,
)

pytestmark = [pytest.mark.robustness]

TEXT = "one two three"
# Every whole answer and error body of the mock is larger than this, every stream event of a
# normal stream far smaller.
TIGHT_BODY = 64
EVENT_LIMIT = 16 * 1024
TRANSLATED = "translated"
EACH_ROUTE = pytest.mark.parametrize("route", [CHAT, RESPONSES, TRANSLATED])


@dataclass
class Setup:
    gateway: Gateway
    key: str


@pytest.fixture
def setup(gateways: Gateways) -> Setup:
    keys = Keys.make("acme")
    limits = {"max_body_bytes": TIGHT_BODY, "max_event_bytes": EVENT_LIMIT}
    upstreams = {
        "tight": mock_upstream(unique("bm-tight"), **limits),
        "tight-chat": mock_upstream(unique("bm-tight-chat"), responses=False, **limits),
        "roomy": mock_upstream(unique("bm-roomy"), max_event_bytes=EVENT_LIMIT),
        "roomy-chat": mock_upstream(
            unique("bm-roomy-chat"), responses=False, max_event_bytes=EVENT_LIMIT
        ),
    }
    config = proxy_config(
        list(upstreams.values()),
        [model(name, [upstream["name"]]) for name, upstream in upstreams.items()],
        retry={"max_attempts": 1},
        keys=keys,
        ledger={"backend": "memory"},
    )
    return Setup(gateways.start(config, keys.env()), keys.tenants["acme"])


def model_of(route: str, room: str) -> str:
    """`room` is "tight" or "roomy"; a translated route goes to the chat-only upstream."""
    return f"{room}-chat" if route == TRANSLATED else room


def endpoint_of(route: str) -> str:
    return CHAT if route == CHAT else RESPONSES


def record_of(setup: Setup, request_id: str) -> dict[str, Any]:
    records = [
        record
        for record in records_of(setup.gateway, setup.key)["records"]
        if record["request_id"] == request_id
    ]
    assert len(records) == 1, f"exactly one ledger record per request: {records}"
    return records[0]


def post(setup: Setup, route: str, room: str, request_id: str, fault: str | None = None) -> Any:
    endpoint = endpoint_of(route)
    headers = {"x-request-id": request_id, **({"x-mock-fault": fault} if fault else {})}
    body = request_body(endpoint, model_of(route, room), TEXT)
    return setup.gateway.http(setup.key).post(PATHS[endpoint], json=body, headers=headers)


def assert_still_serving(setup: Setup, route: str) -> None:
    response = post(setup, route, "roomy", f"after-{unique('r')}")
    assert response.status_code == 200, response.text


@EACH_ROUTE
def test_a_whole_answer_over_max_body_bytes_is_a_502(setup: Setup, tag: str, route: str) -> None:
    response = post(setup, route, "tight", f"big-{tag}")
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("upstream_body_too_large", "upstream_error")
    assert f"limit of {TIGHT_BODY} bytes" in error["message"]
    assert record_of(setup, f"big-{tag}")["status"] == 502
    # The same request within the limit is answered: the limit, not the request, refused it.
    roomy = post(setup, route, "roomy", f"roomy-{tag}")
    assert roomy.status_code == 200, roomy.text


@EACH_ROUTE
def test_an_error_body_over_max_body_bytes_is_not_relayed(
    setup: Setup, tag: str, route: str
) -> None:
    fault = "type=status;status=500;message=" + "m" * 200
    response = post(setup, route, "tight", f"bigerr-{tag}", fault)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_body_too_large"
    assert "m" * 100 not in response.text
    assert record_of(setup, f"bigerr-{tag}")["status"] == 502
    # Within the limit, the upstream's own error is relayed as it came.
    roomy = post(setup, route, "roomy", f"err-{tag}", fault)
    assert roomy.status_code == 500
    assert "m" * 200 in roomy.json()["error"]["message"]
    assert_still_serving(setup, route)


@EACH_ROUTE
def test_a_stream_event_over_max_event_bytes_ends_the_stream_with_an_error_event(
    setup: Setup, tag: str, route: str
) -> None:
    endpoint = endpoint_of(route)
    body = request_body(endpoint, model_of(route, "roomy"), TEXT, stream=True)
    # The first content event alone holds twice the limit.
    fault = f"type=flood;chunks=3;chunk_bytes={2 * EVENT_LIMIT}"
    headers = {"x-mock-fault": fault, "x-request-id": f"flood-{tag}"}
    response, raw = read_stream(setup.gateway.http(setup.key), endpoint, body, headers)
    assert response.status_code == 200
    event = stream_error_event(endpoint, raw)
    assert event is not None, raw[-600:]
    assert event["code"] == "upstream_event_too_large"
    assert f"limit of {EVENT_LIMIT} bytes" in event["message"]
    assert not stream_completed(endpoint, raw)
    assert "x" * 1024 not in raw, "nothing of the oversized event reaches the client"
    assert len(raw) < EVENT_LIMIT
    assert record_of(setup, f"flood-{tag}")["status"] == 502
    assert_still_serving(setup, route)


@EACH_ROUTE
def test_streams_within_the_limits_are_whole_even_past_max_body_bytes(
    setup: Setup, tag: str, route: str
) -> None:
    # `max_body_bytes` bounds whole bodies only: a stream is held one event at a time, so one
    # far longer than the body limit (tight) and events up to the event limit pass.
    endpoint = endpoint_of(route)
    for room, fault in [("tight", None), ("roomy", "type=flood;chunks=8;chunk_bytes=1024")]:
        body = request_body(endpoint, model_of(route, room), TEXT, stream=True)
        headers = {"x-request-id": f"ok-{room}-{tag}", **({"x-mock-fault": fault} if fault else {})}
        response, raw = read_stream(setup.gateway.http(setup.key), endpoint, body, headers)
        assert response.status_code == 200
        assert stream_error_event(endpoint, raw) is None, raw[-600:]
        assert stream_completed(endpoint, raw)
        text = stream_text(endpoint, raw)
        if fault is None:
            assert text == reply_to(TEXT)
        else:
            assert text == "x" * 8 * 1024
        assert record_of(setup, f"ok-{room}-{tag}")["status"] == 200


@EACH_ENDPOINT
def test_an_answer_larger_than_the_memory_caches_budget_is_not_cached(
    gateways: Gateways, tag: str, endpoint: str
) -> None:
    upstream = unique("bm-cache")
    config = proxy_config(
        [mock_upstream(upstream)],
        [model("cached", [upstream])],
        cache={"backend": "memory", "ttl_seconds": 300, "max_bytes": 8192},
    )
    sdk = gateways.start(config).sdk()
    small, large = f"small {tag}", f"large {tag} " + "word " * 2000
    assert [ask(sdk, endpoint, "cached", small).cache for _ in range(2)] == ["MISS", "HIT"]
    for _ in range(2):
        answer = ask(sdk, endpoint, "cached", large)
        assert answer.status == 200, answer.error
        assert answer.text == reply_to(large)
        assert answer.cache == "MISS", "larger than the whole budget: never stored"
    assert ask(sdk, endpoint, "cached", small).cache == "HIT", "and it evicted nothing"


def test_a_long_chain_continues_whole_while_its_oldest_turns_are_evicted(
    gateways: Gateways, tag: str
) -> None:
    # Each turn keeps only what it added, linked to the turn it continued: with room for five
    # responses, the fortieth still carries all forty questions upstream (the mock's reply
    # counts the user messages), while a response that left the store is gone.
    upstream = unique("bm-chain")
    config = proxy_config(
        [mock_upstream(upstream, responses=False)],
        [model("chain", [upstream])],
        server={"response_store_capacity": 5},
    )
    client = gateways.start(config).http()
    ids: list[str] = []
    for turn in range(1, 41):
        body: dict[str, Any] = {"model": "chain", "input": f"question {turn} {tag}"}
        if ids:
            body["previous_response_id"] = ids[-1]
        response = client.post(PATHS[RESPONSES], json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["output"][0]["content"][0]["text"].startswith(f"reply {turn}: ")
        ids.append(answer["id"])
    gone = client.post(
        PATHS[RESPONSES],
        json={"model": "chain", "input": "again", "previous_response_id": ids[0]},
    )
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "previous_response_not_found"


def test_the_response_stores_byte_budget_comes_from_the_config(
    gateways: Gateways, tag: str
) -> None:
    # A budget smaller than one response: it is answered, and not kept.
    upstream = unique("bm-budget")
    config = proxy_config(
        [mock_upstream(upstream, responses=False)],
        [model("kept", [upstream])],
        server={"response_store_bytes": 512},
    )
    client = gateways.start(config).http()
    made = client.post(PATHS[RESPONSES], json={"model": "kept", "input": "x " * 400 + tag})
    assert made.status_code == 200, made.text
    retrieved = client.get(f"/v1/responses/{made.json()['id']}")
    assert retrieved.status_code == 404
