"""Client-level checks through the proxy against a real endpoint."""

from __future__ import annotations

import openai
import pytest

from harness.pytest.real_endpoint import MODEL

PROMPT = [{"role": "user", "content": "Reply with the single word: pong"}]


def test_models_lists_the_configured_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=5)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        max_tokens=5,
        stream=True,  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_responses(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Reply with the single word: pong", metadata={"suite": "switchyard"}
    )
    assert response.status == "completed"
    assert response.output_text
    assert response.metadata == {"suite": "switchyard"}


def test_responses_stream(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="Reply with the single word: pong") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text


def test_unknown_model_is_refused_by_the_proxy(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="not-configured", messages=PROMPT)  # type: ignore[arg-type]
