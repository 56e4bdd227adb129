"""The mock's stored responses, as a native Responses upstream keeps them: `responses.retrieve`,
`responses.delete` and `input_items.list`, read by the official SDK with strict validation,
and the API's 404 for an id this upstream never produced."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseItem
from pydantic import TypeAdapter

from harness.pytest.mock_wire import sdk

ITEMS = TypeAdapter(list[ResponseItem])

CONVERSATION: list[Any] = [
    {"role": "developer", "content": "be terse"},
    {"role": "user", "content": [{"type": "input_text", "text": "first question"}]},
    {"role": "assistant", "content": "an earlier answer"},
    {"type": "message", "role": "user", "content": "second question"},
]


@pytest.fixture
def upstream(tag: str) -> str:
    return "stored-" + tag


def test_a_response_is_retrieved_as_it_was_created(mock_url, upstream):
    client = sdk(mock_url, upstream)
    created = client.responses.create(model="mock-model", input="hello there")
    retrieved = client.responses.retrieve(created.id)
    assert isinstance(retrieved, Response)
    assert retrieved.model_dump() == created.model_dump()


def test_a_streamed_response_is_retrieved_complete(mock_url, upstream):
    client = sdk(mock_url, upstream)
    with client.responses.stream(model="mock-model", input="stream me") as stream:
        final = stream.get_final_response()
    retrieved = client.responses.retrieve(final.id)
    assert retrieved.status == "completed"
    assert retrieved.output_text == final.output_text


def test_input_items_list_every_item_with_an_id_newest_first(mock_url, upstream):
    client = sdk(mock_url, upstream)
    created = client.responses.create(model="mock-model", input=CONVERSATION)
    page = client.responses.input_items.list(created.id)
    items = ITEMS.validate_python([item.model_dump() for item in page.data])
    assert [item.id for item in items] == [item.id for item in page.data]
    roles = [getattr(item, "role", None) for item in items]
    assert roles == ["user", "assistant", "user", "developer"]
    assert all(item.id for item in items)
    assert items[0].content[0].text == "second question"  # type: ignore[union-attr]
    assert page.first_id == items[0].id and page.last_id == items[-1].id
    assert page.has_more is False


PAGES = {
    "ascending, two per page": ({"order": "asc", "limit": 2}, [[0, 1], [2, 3]]),
    "descending, three per page": ({"order": "desc", "limit": 3}, [[3, 2, 1], [0]]),
}


@pytest.mark.parametrize(("query", "pages"), list(PAGES.values()), ids=list(PAGES))
def test_input_items_page_with_the_after_cursor(mock_url, upstream, query, pages):
    client = sdk(mock_url, upstream)
    created = client.responses.create(model="mock-model", input=CONVERSATION)
    everything = client.responses.input_items.list(created.id, order="asc").data
    texts = [item.content[0].text for item in everything]  # type: ignore[union-attr]
    seen: list[list[str]] = []
    after: str | None = None
    for _ in pages:
        extra = {"after": after} if after else {}
        page = client.responses.input_items.list(created.id, **query, **extra)
        seen.append([item.content[0].text for item in page.data])  # type: ignore[union-attr]
        after = page.last_id
    assert seen == [[texts[i] for i in page] for page in pages]
    assert page.has_more is False


def test_a_deleted_response_is_gone(mock_url, upstream):
    http = httpx.Client(base_url=f"{mock_url}/{upstream}/v1")
    client = sdk(mock_url, upstream)
    created = client.responses.create(model="mock-model", input="short-lived")
    deleted = http.delete(f"/responses/{created.id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as continued:
        client.responses.create(model="mock-model", input="more", previous_response_id=created.id)
    assert continued.value.code == "previous_response_not_found"


UNKNOWN = {
    "retrieve": ("GET", ""),
    "delete": ("DELETE", ""),
    "input items": ("GET", "/input_items"),
}


@pytest.mark.parametrize(("method", "suffix"), list(UNKNOWN.values()), ids=list(UNKNOWN))
def test_an_id_this_upstream_never_produced_is_the_apis_404(mock_url, upstream, method, suffix):
    client = sdk(mock_url, upstream)
    elsewhere = sdk(mock_url, upstream + "-other").responses.create(model="m", input="x")
    stateless = client.responses.create(model="m", input="not kept", store=False)
    for response_id in ("resp_never", elsewhere.id, stateless.id):
        reply = httpx.request(method, f"{mock_url}/{upstream}/v1/responses/{response_id}{suffix}")
        assert reply.status_code == 404, response_id
        error = reply.json()["error"]
        assert error["message"] == f"Response with id '{response_id}' not found."
        assert error["type"] == "invalid_request_error"


BAD_QUERIES = {"limit 0": ("limit=0", "limit"), "order sideways": ("order=up", "order")}


@pytest.mark.parametrize(("query", "param"), list(BAD_QUERIES.values()), ids=list(BAD_QUERIES))
def test_input_items_refuse_a_bad_limit_or_order(mock_url, upstream, query, param):
    created = sdk(mock_url, upstream).responses.create(model="m", input="x")
    url = f"{mock_url}/{upstream}/v1/responses/{created.id}/input_items?{query}"
    reply = httpx.get(url)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param


def test_a_chat_only_upstream_has_no_stored_responses(mock_url, upstream):
    created = sdk(mock_url, upstream).responses.create(model="m", input="x")
    reply = httpx.get(f"{mock_url}/chat-only/{upstream}/v1/responses/{created.id}")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "unknown_url"
