"""A response after it was made, through the proxy (contract section 3, "Stored responses"):
`responses.retrieve`, `responses.delete` and `input_items.list` for native and translated
responses, continuations that go where the response lives whatever the strategy, and cached
answers that never name a response nothing holds.

Native responses live on the mock upstream that made them; translated ones in the proxy's store.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseItem
from pydantic import TypeAdapter

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    Gateway,
    Gateways,
    logged,
    mock_upstream,
    model,
    proxy_config,
    reply_to,
    unique,
)

ITEMS = TypeAdapter(list[ResponseItem])
INPUT: list[Any] = [
    {"role": "developer", "content": "be terse"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "an earlier answer"},
    {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
]
KINDS = {"native": True, "translated": False}


def single(gateways: Gateways, native: bool, **server: Any) -> Gateway:
    upstream = unique("kept")
    return gateways.start(
        proxy_config(
            [mock_upstream(upstream, responses=native)],
            [model("kept", [upstream])],
            server=server or None,
        )
    )


def create(sdk: openai.OpenAI, stream: bool, **request: Any) -> Response:
    if not stream:
        return sdk.responses.create(model=request.pop("model", "kept"), **request)
    with sdk.responses.stream(model=request.pop("model", "kept"), **request) as events:
        return events.get_final_response()


@pytest.mark.parametrize("native", list(KINDS.values()), ids=list(KINDS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_response_is_retrieved_as_the_client_got_it(
    gateways: Gateways, native: bool, stream: bool
) -> None:
    sdk = single(gateways, native).sdk()
    created = create(sdk, stream, input="keep this")
    retrieved = sdk.responses.retrieve(created.id)
    assert isinstance(retrieved, Response)
    assert retrieved.id == created.id
    assert retrieved.status == "completed"
    assert retrieved.output_text == created.output_text == reply_to("keep this")
    assert [item.id for item in retrieved.output] == [item.id for item in created.output]


@pytest.mark.parametrize("native", list(KINDS.values()), ids=list(KINDS))
def test_input_items_are_listed_and_paged(gateways: Gateways, native: bool) -> None:
    sdk = single(gateways, native).sdk()
    created = sdk.responses.create(model="kept", input=INPUT)
    newest_first = sdk.responses.input_items.list(created.id)
    ITEMS.validate_python([item.model_dump() for item in newest_first.data])
    roles = [getattr(item, "role", None) for item in newest_first.data]
    assert roles == ["user", "assistant", "user", "developer"]
    first_page = sdk.responses.input_items.list(created.id, order="asc", limit=3)
    assert first_page.has_more is True
    rest = sdk.responses.input_items.list(created.id, order="asc", after=first_page.last_id)
    ids = [item.id for item in first_page.data] + [item.id for item in rest.data]
    assert ids == [item.id for item in reversed(newest_first.data)]
    assert rest.has_more is False


@pytest.mark.parametrize("native", list(KINDS.values()), ids=list(KINDS))
def test_a_deleted_response_can_be_neither_retrieved_nor_continued(
    gateways: Gateways, native: bool
) -> None:
    gateway = single(gateways, native)
    sdk, http = gateway.sdk(), gateway.http()
    created = sdk.responses.create(model="kept", input="short-lived")
    deleted = http.delete(f"/v1/responses/{created.id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as continued:
        sdk.responses.create(model="kept", input="more", previous_response_id=created.id)
    assert continued.value.code == "previous_response_not_found"


UNKNOWN = {
    "retrieve": ("GET", ""),
    "delete": ("DELETE", ""),
    "input items": ("GET", "/input_items"),
}


@pytest.mark.parametrize(("method", "suffix"), list(UNKNOWN.values()), ids=list(UNKNOWN))
def test_an_id_nothing_holds_is_the_apis_404(gateways: Gateways, method: str, suffix: str) -> None:
    http = single(gateways, True).http()
    reply = http.request(method, f"/v1/responses/resp_nobody_made_this{suffix}")
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["message"] == "Response with id 'resp_nobody_made_this' not found."
    assert error["type"] == "invalid_request_error"


def test_a_translated_response_is_not_streamed_again(gateways: Gateways) -> None:
    gateway = single(gateways, False)
    created = gateway.sdk().responses.create(model="kept", input="once")
    reply = gateway.http().get(f"/v1/responses/{created.id}", params={"stream": "true"})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "stream"


def test_bad_paging_is_a_400_naming_the_parameter(gateways: Gateways) -> None:
    gateway = single(gateways, False)
    created = gateway.sdk().responses.create(model="kept", input="once")
    for query, param in (({"limit": "0"}, "limit"), ({"order": "sideways"}, "order")):
        reply = gateway.http().get(f"/v1/responses/{created.id}/input_items", params=query)
        assert reply.status_code == 400, query
        assert reply.json()["error"]["param"] == param


# --------------------------------------------------------------------------- continuations


def mixed(gateways: Gateways, *kinds: bool) -> tuple[Gateway, list[str]]:
    """One round-robin model over upstreams of the given kinds (True: native)."""
    names = [unique("mixed") for _ in kinds]
    pairs = zip(names, kinds, strict=True)
    upstreams = [mock_upstream(name, responses=native) for name, native in pairs]
    gateway = gateways.start(
        proxy_config(upstreams, [model("mixed", names, strategy="round_robin")])
    )
    return gateway, names


def answered_by(sdk: openai.OpenAI, **request: Any) -> tuple[Response, str]:
    raw = sdk.responses.with_raw_response.create(model="mixed", **request)
    return raw.parse(), raw.headers["x-mock-upstream"]


MIXES = {"a native and a chat upstream": (True, False), "two native upstreams": (True, True)}


@pytest.mark.parametrize("kinds", list(MIXES.values()), ids=list(MIXES))
def test_every_continuation_goes_where_its_response_lives(
    gateways: Gateways, kinds: tuple[bool, bool]
) -> None:
    gateway, _ = mixed(gateways, *kinds)
    sdk = gateway.sdk()
    # Round robin alternates: the four chains start on both upstreams, and a continuation
    # sent by the strategy alone would land on the other one half the time.
    for chain in range(4):
        first, first_upstream = answered_by(sdk, input=f"chain {chain} starts")
        second, second_upstream = answered_by(
            sdk, input=f"chain {chain} goes on", previous_response_id=first.id
        )
        assert second_upstream == first_upstream
        # "reply 2": the upstream answered with the first turn in its history.
        assert second.output_text == f"reply 2: chain {chain} goes on"
        third, third_upstream = answered_by(
            sdk, input=f"chain {chain} ends", previous_response_id=second.id
        )
        assert third_upstream == first_upstream
        assert third.output_text == f"reply 3: chain {chain} ends"
        retrieved = sdk.responses.retrieve(third.id)
        assert retrieved.output_text == third.output_text


def test_a_continuation_whose_upstream_is_down_fails_and_goes_nowhere_else(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, (left, right) = mixed(gateways, True, True)
    sdk = gateway.sdk()
    first, holder = answered_by(sdk, input="before the outage")
    other = right if holder == left else left
    mock_control.add_fault({"type": "status", "status": 503}, times=100, upstream=holder, tag=tag)
    before = len(logged(mock_control, tag, other))
    with pytest.raises(openai.APIStatusError) as failed:
        answered_by(sdk, input="during the outage", previous_response_id=first.id)
    assert failed.value.status_code == 503
    assert len(logged(mock_control, tag, other)) == before, "sent to an upstream without it"


def test_a_continuation_on_a_model_its_upstream_does_not_serve_is_refused(
    gateways: Gateways,
) -> None:
    native, chat = unique("holder"), unique("chat")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(native), mock_upstream(chat, responses=False)],
            [model("on-native", [native]), model("on-chat", [chat])],
        )
    )
    sdk = gateway.sdk()
    made_natively = sdk.responses.create(model="on-native", input="here")
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="on-chat", input="there", previous_response_id=made_natively.id)
    assert refused.value.param == "previous_response_id"  # type: ignore[attr-defined]
    assert native in refused.value.message
    translated = sdk.responses.create(model="on-chat", input="there")
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="on-native", input="back", previous_response_id=translated.id)
    assert refused.value.param == "previous_response_id"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_cached_response_the_store_no_longer_holds_is_answered_afresh(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, stream: bool
) -> None:
    upstream = unique("cached")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(upstream, responses=False)],
            [model("kept", [upstream])],
            server={"response_store_capacity": 1},
            cache={"backend": "memory", "ttl_seconds": 300},
        )
    )
    sdk = gateway.sdk()
    first = create(sdk, stream, input=f"cache me {tag}")
    again = create(sdk, stream, input=f"cache me {tag}")
    assert again.id == first.id, "a held response is replayed from the cache"
    create(sdk, stream, input=f"push the first one out {tag}")
    upstream_calls = len(logged(mock_control, tag, upstream))
    fresh = create(sdk, stream, input=f"cache me {tag}")
    assert fresh.id != first.id
    assert len(logged(mock_control, tag, upstream)) == upstream_calls + 1
    assert sdk.responses.retrieve(fresh.id).output_text == reply_to(f"cache me {tag}")
    continued = sdk.responses.create(model="kept", input="and then", previous_response_id=fresh.id)
    assert continued.output_text == "reply 2: and then"


@pytest.mark.parametrize("native", list(KINDS.values()), ids=list(KINDS))
def test_a_response_cached_by_another_proxy_is_replayed_only_where_it_is_held(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, native: bool
) -> None:
    upstream = unique("shared")
    config = proxy_config(
        [mock_upstream(upstream, responses=native)],
        [model("kept", [upstream])],
        cache={"backend": "redis", "redis_url": "redis://127.0.0.1:${redis.port}/0"},
    )
    writer, reader = gateways.start(config), gateways.start(config)
    first = writer.sdk().responses.create(model="kept", input=f"shared {tag}")
    calls_before = len(logged(mock_control, tag, upstream))
    sdk = reader.sdk()
    again = sdk.responses.create(model="kept", input=f"shared {tag}")
    if native:
        # The upstream that made it holds it: replayed, and the reader can use its id.
        assert again.id == first.id
        assert len(logged(mock_control, tag, upstream)) == calls_before
    else:
        # Only the writer's store holds a translated response: the reader answers afresh.
        assert again.id != first.id
        assert len(logged(mock_control, tag, upstream)) == calls_before + 1
    assert sdk.responses.retrieve(again.id).id == again.id
    continued = sdk.responses.create(model="kept", input="next", previous_response_id=again.id)
    assert continued.output_text == "reply 2: next"
