"""Many requests at once: each gets its own, correct answer."""

from __future__ import annotations

import asyncio

import openai
import pytest

from harness.pytest.gateway import CLIENT_KEY

CONCURRENT = 50


@pytest.mark.slow
def test_fifty_concurrent_requests(proxy_url: str, tag: str, mock_control) -> None:
    async def one(sdk: openai.AsyncOpenAI, index: int, stream: bool) -> str:
        messages = [{"role": "user", "content": f"request number {index}"}]
        if not stream:
            completion = await sdk.chat.completions.create(model="mock-chat", messages=messages)  # type: ignore[arg-type]
            return completion.choices[0].message.content or ""
        chunks = await sdk.chat.completions.create(
            model="mock-chat", messages=messages, stream=True
        )  # type: ignore[arg-type]
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"{proxy_url}/v1",
            api_key=CLIENT_KEY,
            default_headers={"x-mock-tag": tag},
            max_retries=0,
        ) as sdk:
            return await asyncio.gather(*(one(sdk, i, i % 2 == 0) for i in range(CONCURRENT)))

    answers = asyncio.run(main())
    assert answers == [f"reply 1: request number {i}" for i in range(CONCURRENT)]
    assert mock_control.counts(tag=tag)["total"] == CONCURRENT
