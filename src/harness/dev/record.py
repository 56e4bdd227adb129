"""`invoke record`: capture cassettes of an upstream's traffic once, to replay in the fast tier.

A recorder (`harness.pytest.recording`) is started in front of the upstream, and a short script
of calls goes through it with the official SDK: chat whole and streamed, responses whole and
streamed, a streamed tool call. Each call is one cassette, named after its take. The upstream is
the real endpoint (OPENAI_API_KEY, OPENAI_BASE_URL, SWITCHYARD_INTEGRATION_MODEL, from the
environment or the `.env` file), or, with `--upstream mock`, a mock started for the purpose: that
is how the shipped cassettes (`tests/cassettes/`) are made. No value of a key is ever printed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.pytest.recording import (
    NAME_HEADER,
    RECORDER_ERROR_HEADER,
    Cassette,
    CassetteError,
    Recording,
    recording,
    redacted_url,
)
from harness.runtime import console, envfile, paths
from harness.runtime.poll import wait_until
from harness.runtime.process import ProcessError

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
UPSTREAMS = ("real", "mock")
# The key the script sends the mock: it must be scrubbed like any other.
MOCK_KEY = "sk-recording-from-the-mock"
# From the mock, each event is sent this long after the one before, as a real stream's are, so
# the cassette's chunks are its events rather than a few reads that each hold many.
MOCK_PACING = {"x-mock-fault": "type=latency;between_chunks_ms=5"}
# How long the recorder may take to write a cassette after its client has read the answer.
SAVE_TIMEOUT = 10.0
PROMPT = "Reply with exactly these words: red green blue"
TOOL_PROMPT = "What is the weather in Paris? Use the get_weather tool."
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def default_out() -> Path:
    return paths.reports_dir() / "cassettes"


@dataclass(frozen=True)
class Take:
    """One scripted call; its cassette is named `name`."""

    name: str
    call: Callable[[openai.OpenAI, str, dict[str, str]], Any]


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _chat(client: openai.OpenAI, model: str, headers: dict[str, str]) -> None:
    client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=20,
        extra_headers=headers,
    )


def _chat_stream(client: openai.OpenAI, model: str, headers: dict[str, str]) -> None:
    _drain(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )


def _responses(client: openai.OpenAI, model: str, headers: dict[str, str]) -> None:
    client.responses.create(model=model, input=PROMPT, max_output_tokens=20, extra_headers=headers)


def _responses_stream(client: openai.OpenAI, model: str, headers: dict[str, str]) -> None:
    _drain(
        client.responses.create(
            model=model, input=PROMPT, max_output_tokens=20, stream=True, extra_headers=headers
        )
    )


def _chat_tool_call_stream(client: openai.OpenAI, model: str, headers: dict[str, str]) -> None:
    _drain(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": TOOL_PROMPT}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )


SCRIPT = (
    Take("chat", _chat),
    Take("chat-stream", _chat_stream),
    Take("responses", _responses),
    Take("responses-stream", _responses_stream),
    Take("chat-tool-call-stream", _chat_tool_call_stream),
)


def saved(session: Recording, name: str) -> Cassette | None:
    return session.load(name) if session.path(name).exists() else None


def play_script(session: Recording, key: str, model: str) -> int:
    """Run every take through the recorder; one line per cassette. Returns how many failed."""
    import openai

    failed = 0
    headers = MOCK_PACING if session.source == "mock" else {}
    with openai.OpenAI(base_url=session.url, api_key=key, max_retries=0, timeout=120) as client:
        for take in SCRIPT:
            # An older cassette of the take's name must not pass for the new one.
            session.path(take.name).unlink(missing_ok=True)
            problem = None
            try:
                take.call(client, model, {**headers, NAME_HEADER: take.name})
            except openai.APIStatusError as error:
                if error.response.headers.get(RECORDER_ERROR_HEADER):
                    console.warn(f"{take.name}: the recorder could not reach the upstream")
                    failed += 1
                    continue
                # The message may quote the key (partly masked or not): only the status shows.
                problem = f"the upstream answered {error.status_code}"
            except openai.APIError as error:
                problem = f"failed ({error.__class__.__name__})"
            if problem is not None:
                console.warn(f"{take.name}: {problem}")
                failed += 1
            try:
                recorded = wait_until(
                    functools.partial(saved, session, take.name),
                    what=f"the cassette {take.name!r}",
                    timeout=SAVE_TIMEOUT,
                )
            except (TimeoutError, CassetteError):
                console.warn(f"{take.name}: no cassette was written")
                failed += problem is None
                continue
            assert recorded is not None
            console.info(
                f"{take.name}: {recorded.method} {recorded.endpoint} -> {recorded.status}, "
                f"{len(recorded.chunks)} chunks, {len(recorded.body)} bytes"
            )
    return failed


def record(upstream: str = "real", out: Path | None = None, model: str | None = None) -> int:
    """Record the script's cassettes into `out` (default reports/cassettes/); the exit code."""
    if upstream not in UPSTREAMS:
        raise ProcessError(f"--upstream must be one of {', '.join(UPSTREAMS)}, not {upstream!r}")
    out = out or default_out()
    if upstream == "mock":
        base_url, key = None, MOCK_KEY
        model = model or DEFAULT_MODEL
        console.info(f"recording from a mock of its own into {out}")
    else:
        taken = envfile.load_keys()
        if taken:
            console.info(f"from {envfile.env_file()}: {', '.join(taken)}")
        key = os.environ.get("OPENAI_API_KEY", "")
        if not key:
            raise ProcessError(
                "OPENAI_API_KEY is not set (nor in .env): it is needed to record a real "
                "endpoint; `--upstream mock` records from the mock instead"
            )
        base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        model = model or os.environ.get("SWITCHYARD_INTEGRATION_MODEL") or DEFAULT_MODEL
    with recording(out, base_url) as session:
        if base_url is not None:
            console.info(f"recording {redacted_url(base_url, [key])} into {out}")
        failed = play_script(session, key, model)
    if failed:
        console.error(f"{failed} of {len(SCRIPT)} takes failed; their cassettes hold the error")
        return 1
    console.success(f"{len(SCRIPT)} cassettes in {out}")
    return 0
