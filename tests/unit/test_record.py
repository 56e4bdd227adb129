"""`invoke record --upstream mock` end to end (the recorder and a mock of its own, started by the
process manager, and the script's calls through the official SDK), and the shipped cassettes:
each one labelled as recorded from the mock is what the mock records today, ids and times
aside, so none was written or edited by hand."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from harness.dev import record
from harness.mock import cassette
from harness.mock.replay import SHIPPED
from harness.pytest.mock_wire import running_mock
from harness.runtime.process import ProcessError

# What differs between two recordings of the mock: its random ids, and the clock.
VOLATILE = [
    (re.compile(r"\b(chatcmpl-|resp_|msg_|call_|fc_)[0-9a-f]+"), r"\1<id>"),
    (re.compile(r'"(created|created_at)":\s*\d+'), r'"\1":0'),
]
RECORD_COMMAND = "uv run invoke record --upstream mock --out tests/cassettes"


def normalized(body: bytes) -> str:
    text = body.decode()
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fresh")
    (out / "chat.json").write_text("an older cassette of a take's name is replaced")
    assert record.record("mock", out) == 0
    return out


def test_recording_from_the_mock_writes_one_cassette_per_take(fresh: Path) -> None:
    assert cassette.names(fresh) == sorted(take.name for take in record.SCRIPT)
    for name in cassette.names(fresh):
        recorded = cassette.load(fresh, name)
        assert recorded.source["kind"] == "mock"
        assert recorded.status == 200
        assert recorded.complete
        assert recorded.streamed == name.endswith("-stream")
        is_sse = recorded.content_type.startswith("text/event-stream")
        assert is_sse == recorded.streamed
        # The script's key went to the mock in every request, and is in no file.
        assert recorded.request_headers["authorization"] == cassette.REDACTED
        assert record.MOCK_KEY not in (fresh / f"{name}.json").read_text()


def test_a_streamed_take_is_recorded_event_by_event(fresh: Path) -> None:
    # The mock is asked to pace its events, as a real stream comes, so each read is one event.
    recorded = cassette.load(fresh, "chat-stream")
    assert len(recorded.chunks) > 2
    assert all(chunk.data.endswith(b"\n\n") for chunk in recorded.chunks)
    offsets = [chunk.at_ms for chunk in recorded.chunks]
    assert offsets == sorted(offsets)


def test_recording_a_real_endpoint_needs_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("SWITCHYARD_ROOT", str(tmp_path))  # no .env there to take one from
    with pytest.raises(ProcessError, match="OPENAI_API_KEY is not set"):
        record.record("real", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_recording_an_endpoint_with_the_key_of_the_environment_shows_it_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The "real" endpoint is a mock here: what is under test is the key's way, from the
    # environment through the SDK and the recorder to the upstream, and that it stays there.
    key = f"sk-test-env-key-{uuid.uuid4().hex}"
    with running_mock("record-real") as (mock_url, _service):
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{mock_url}/v1")
        assert record.record("real", tmp_path, model="m") == 0
    output = capsys.readouterr()
    assert key not in output.out + output.err
    assert len(cassette.names(tmp_path)) == len(record.SCRIPT)
    for name in cassette.names(tmp_path):
        assert key not in (tmp_path / f"{name}.json").read_text()
        source = cassette.load(tmp_path, name).source
        assert (source["kind"], source["upstream"]) == ("real", f"{mock_url}/v1")


SHIPPED_FROM_THE_MOCK = [
    name
    for name in cassette.names(SHIPPED)
    if cassette.load(SHIPPED, name).source["kind"] == "mock"
]


def test_cassettes_are_shipped() -> None:
    assert {take.name for take in record.SCRIPT} <= set(cassette.names(SHIPPED))


@pytest.mark.parametrize("name", SHIPPED_FROM_THE_MOCK)
def test_a_shipped_cassette_is_what_the_mock_records(fresh: Path, name: str) -> None:
    shipped, now = cassette.load(SHIPPED, name), cassette.load(fresh, name)
    hint = f"re-record the shipped cassettes: {RECORD_COMMAND}"
    assert shipped.source["recorder"] == "harness.mock.recorder"
    assert (shipped.method, shipped.endpoint, shipped.status) == (
        now.method,
        now.endpoint,
        now.status,
    ), hint
    assert shipped.request_json() == now.request_json(), hint
    assert normalized(shipped.body) == normalized(now.body), hint
    # Every shipped file reads back as it was written: nothing was added around the format.
    stored = json.loads((SHIPPED / f"{name}.json").read_text())
    assert stored == shipped.to_json()
