"""Cassettes: the format's round trip, the scrubbing of secrets (by the functions, and by the real
recorder in front of the mock), the mock's replay of its own recording, and the replay's errors.

The recorder and the mocks are real processes started by the process manager
(`harness.pytest.recording`); every request goes over HTTP.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from harness.mock.cassette import (
    REDACTED,
    Cassette,
    CassetteError,
    Chunk,
    Scrubber,
    load,
    names,
    save,
)
from harness.mock.recorder import NAME_HEADER
from harness.mock.replay import HEADER, MAX_GAP_MS, MODEL_PREFIX, pauses
from harness.pytest.recording import Recording, recording, replaying_mock

# Stand-in secrets no other test uses: nothing but these tests can have put them in a file.
# Fixed, not random: they are in test ids, which every xdist worker must collect the same.
KEY = "sk-test-cassette-5f0c2b9e7d1a4c3b8e6f0a9d2c7b1e4f"
ENV_SECRET = "sk-env-only-8a3d6b1f9c2e4a7d0b5c8e1f3a6d9b2c"
SECRET_ENV = "SWITCHYARD_TEST_RECORDER_SECRET"


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


# --------------------------------------------------------------------------- the format


def cassette_with(chunks: list[bytes], name: str = "round-trip") -> Cassette:
    return Cassette(
        name=name,
        source={"kind": "mock", "upstream": "http://127.0.0.1:1/v1", "recorded_at": "now"},
        method="POST",
        endpoint="chat/completions",
        url="http://127.0.0.1:1/v1/chat/completions",
        request_headers={"content-type": "application/json"},
        request_body=json.dumps(chat(stream=True)).encode(),
        status=200,
        response_headers=[("content-type", "text/event-stream")],
        headers_ms=1.5,
        chunks=[Chunk(float(index), data) for index, data in enumerate(chunks)],
    )


def test_a_cassette_round_trips_byte_for_byte(tmp_path: Path) -> None:
    # UTF-8 text, a character split across two reads (neither half is UTF-8), raw binary.
    pieces = [b'data: {"x": "caf', "é".encode()[:1], "é".encode()[1:] + b'"}\n\n', b"\xff\x00\xfe"]
    original = cassette_with(pieces)
    save(tmp_path, original)
    stored = json.loads((tmp_path / "round-trip.json").read_text())
    kinds = [sorted(set(chunk) - {"at_ms"}) for chunk in stored["response"]["chunks"]]
    assert kinds == [["text"], ["base64"], ["base64"], ["base64"]]
    loaded = load(tmp_path, "round-trip")
    assert [chunk.data for chunk in loaded.chunks] == pieces
    assert loaded.body == b"".join(pieces)
    assert [chunk.at_ms for chunk in loaded.chunks] == [0.0, 1.0, 2.0, 3.0]
    assert loaded.to_json() == original.to_json()
    assert loaded.streamed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "cassette 'bad'"),
        ('{"format": "something-else/1"}', "not a cassette"),
        ('{"format": "switchyard-cassette/1", "name": "bad"}', "malformed cassette"),
    ],
    ids=["not-json", "other-format", "missing-fields"],
)
def test_an_unreadable_cassette_is_an_error_that_says_why(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CassetteError, match=problem):
        load(tmp_path, "bad")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x..y"])
def test_a_cassette_name_cannot_leave_its_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(CassetteError, match="invalid cassette name"):
        load(tmp_path, name)
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("headers_ms", "offsets", "expected_ms"),
    [
        (2.0, [0.0, 10.0, 25.0], [2.0, 0.0, 10.0, 15.0]),
        # A long wait for the first byte and a long gap are cut; the short gaps are kept.
        (900.0, [400.0, 401.5, 2401.5], [MAX_GAP_MS, MAX_GAP_MS, 1.5, MAX_GAP_MS]),
        (0.0, [], [0.0]),
    ],
    ids=["recorded-gaps", "long-gaps-cut", "empty-body"],
)
def test_replay_waits_the_recorded_gaps_cut_to_the_cap(
    headers_ms: float, offsets: list[float], expected_ms: list[float]
) -> None:
    recorded = cassette_with([b"x"] * len(offsets))
    recorded.headers_ms = headers_ms
    for chunk, at_ms in zip(recorded.chunks, offsets, strict=True):
        chunk.at_ms = at_ms
    assert pauses(recorded) == pytest.approx([ms / 1000 for ms in expected_ms])


# --------------------------------------------------------------------------- scrubbing


def scrubbed_url(url: str) -> str:
    return Scrubber([KEY]).url(url)


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (f"https://user:{KEY}@example.test/v1", "https://<redacted>@example.test/v1"),
        (
            f"https://example.test/v1/chat?key={KEY}&api-version=2024-10-21",
            "https://example.test/v1/chat?key=<redacted>&api-version=2024-10-21",
        ),
        (f"https://example.test/v1/chat?api-key={quote(KEY)}", "api-key=<redacted>"),
        (f"https://example.test/{KEY}/v1", f"https://example.test/{REDACTED}/v1"),
    ],
    ids=["credentials", "query-key", "query-api-key", "in-the-path"],
)
def test_a_url_keeps_no_secret(url: str, kept: str) -> None:
    cleaned = scrubbed_url(url)
    assert KEY not in cleaned
    assert kept in cleaned


@pytest.mark.parametrize("cut", [1, 5, len(KEY) // 2, len(KEY) - 1])
def test_a_secret_split_across_chunks_is_scrubbed_and_the_rest_kept(cut: int) -> None:
    body = f'data: {{"echo": "{KEY}"}}\n\ndata: [DONE]\n\n'.encode()
    split = body.index(KEY.encode()) + cut
    chunks = [Chunk(0.0, body[:4]), Chunk(1.0, body[4:split]), Chunk(2.0, body[split:])]
    cleaned = Scrubber([KEY]).chunks(chunks)
    joined = b"".join(chunk.data for chunk in cleaned)
    assert joined == body.replace(KEY.encode(), REDACTED.encode())
    # The chunks the secret did not touch keep their times and bytes.
    assert (cleaned[0].at_ms, cleaned[0].data) == (0.0, body[:4])


@pytest.mark.parametrize(
    ("header", "value", "secret"),
    [
        ("Authorization", f"Bearer {KEY}", KEY),
        ("api-key", KEY, KEY),
        ("Cookie", f"theme=dark; session={KEY}", KEY),
        ("Set-Cookie", f"__cf_bm={KEY}; Path=/; HttpOnly", KEY),
        ("OpenAI-Organization", "org-a1b2c3d4e5f6", "org-a1b2c3d4e5f6"),
        ("OpenAI-Project", "proj_a1b2c3d4e5f6", "proj_a1b2c3d4e5f6"),
    ],
)
def test_a_secret_header_is_replaced_and_its_value_scrubbed_everywhere(
    header: str, value: str, secret: str
) -> None:
    scrubber = Scrubber()
    scrubber.learn([(header, value)])
    [(name, kept)] = scrubber.headers([(header, value)])
    assert (name, kept) == (header.lower(), REDACTED)
    assert scrubber.text(f"the body says {secret}.") == f"the body says {REDACTED}."


def test_a_short_secret_header_is_replaced_but_not_searched_for() -> None:
    # A cookie of `1` must not blank out every `1` of the answer.
    scrubber = Scrubber()
    scrubber.learn([("cookie", "seen=1")])
    assert scrubber.headers([("cookie", "seen=1")]) == [("cookie", REDACTED)]
    assert scrubber.text("reply 1: ok") == "reply 1: ok"


# --------------------------------------------------------------------------- the recorder


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """A recorder in front of a mock of its own, which knows one more secret from its
    environment (as it knows OPENAI_API_KEY)."""
    out = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_ENV, ENV_SECRET)
        with recording(out, scrub_env=[SECRET_ENV]) as session:
            patch.delenv(SECRET_ENV)
            yield session


def send(session: Recording, name: str, path: str, body: Any, headers: dict[str, str]) -> bytes:
    """A request through the recorder; the bytes of the answer, as the client got them."""
    with httpx.Client(base_url=session.url, timeout=10) as client:
        sent = {**headers, NAME_HEADER: name}
        with client.stream("POST", path, json=body, headers=sent) as response:
            return response.read()


BEARER = {"authorization": f"Bearer {KEY}"}
# Where a secret can be: each case puts it somewhere, and the cassette must not hold it.
SCRUB_CASES = {
    "authorization-header": ("/chat/completions", chat(), BEARER),
    "api-key-header": ("/chat/completions", chat(), {"api-key": KEY}),
    "cookie-and-account-headers": (
        "/chat/completions",
        chat(),
        {"cookie": f"session={KEY}", "openai-organization": KEY, "openai-project": KEY},
    ),
    "query": (f"/chat/completions?api-key={KEY}", chat(), {}),
    # The mock's reply echoes the user's text, so the key is in the request and the answer.
    "request-and-answer": ("/chat/completions", chat(f"my key is {KEY}"), BEARER),
    "streamed-answer": ("/chat/completions", chat(f"key {KEY}", stream=True), BEARER),
    "responses-stream": ("/responses", {"model": "m", "input": KEY, "stream": True}, BEARER),
    # An upstream error that quotes the key it refused.
    "error-quotes-the-key": (
        "/chat/completions",
        chat(),
        {**BEARER, "x-mock-fault": "type=status;status=401;echo_key=1"},
    ),
}


@pytest.mark.parametrize("case", sorted(SCRUB_CASES))
def test_the_recorder_keeps_no_secret(recorded: Recording, case: str) -> None:
    path, body, headers = SCRUB_CASES[case]
    answer = send(recorded, case, path, body, headers)
    text = recorded.path(case).read_text()
    assert KEY not in text and quote(KEY, safe="") not in text
    cassette = recorded.load(case)
    # Scrubbed, not dropped: the answer is there, the secret replaced where it was.
    assert cassette.body == answer.replace(KEY.encode(), REDACTED.encode())
    assert cassette.status == (401 if "error" in case else 200)
    for name in set(headers) - {"x-mock-fault"}:
        assert cassette.request_headers[name] == REDACTED


def test_the_recorder_scrubs_a_secret_it_knows_from_its_environment(recorded: Recording) -> None:
    # No header carries it: only the recorder's environment said it is a secret.
    answer = send(recorded, "env-secret", "/chat/completions", chat(f"see {ENV_SECRET}"), {})
    assert ENV_SECRET.encode() in answer  # the client gets the answer unchanged
    assert ENV_SECRET not in recorded.path("env-secret").read_text()


def test_a_cassette_records_where_it_came_from(recorded: Recording) -> None:
    send(recorded, "labelled", "/chat/completions", chat(), {})
    cassette = recorded.load("labelled")
    assert cassette.source["kind"] == "mock"
    assert cassette.source["recorder"] == "harness.mock.recorder"
    assert cassette.source["upstream"] == f"{recorded.mock_url}/v1"
    assert cassette.endpoint == "chat/completions"
    assert cassette.url == f"{recorded.mock_url}/v1/chat/completions"


def test_unnamed_exchanges_are_numbered_by_endpoint_and_mode(recorded: Recording) -> None:
    before = set(recorded.cassettes())
    with httpx.Client(base_url=recorded.url, timeout=10) as client:
        assert client.post("/chat/completions", json=chat(stream=True)).status_code == 200
        assert client.get("/models").status_code == 200
    new = sorted(set(recorded.cassettes()) - before)
    assert [name.split("-", 1)[1] for name in new] == ["chat-completions-stream", "models"]


# --------------------------------------------------------------------------- replay


@pytest.fixture(scope="module")
def originals(recorded: Recording) -> dict[str, bytes]:
    """Answers the mock gave through the recorder, as their clients read them."""
    takes = {
        "orig-chat": ("/chat/completions", chat("replay me")),
        "orig-chat-stream": ("/chat/completions", chat("replay me", stream=True)),
        "orig-responses-stream": ("/responses", {"model": "m", "input": "hi", "stream": True}),
        "orig-models": ("/models", None),
    }
    answers = {}
    with httpx.Client(base_url=recorded.url, timeout=10) as client:
        for name, (path, body) in takes.items():
            method = "GET" if body is None else "POST"
            response = client.request(method, path, json=body, headers={NAME_HEADER: name})
            answers[name] = response.content
    return answers


@pytest.fixture(scope="module")
def replayer(recorded: Recording, originals: dict[str, bytes]) -> Iterator[httpx.Client]:
    """Raw HTTP to a mock that replays the recorder's folder."""
    with replaying_mock(recorded.out) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("name", ["orig-chat", "orig-chat-stream", "orig-responses-stream"])
def test_the_mock_replays_its_own_recording_byte_for_byte(
    replayer: httpx.Client, recorded: Recording, originals: dict[str, bytes], name: str
) -> None:
    cassette = recorded.load(name)
    body = cassette.request_json()
    path = f"/v1/{cassette.endpoint}"
    replayed = replayer.post(path, json=body, headers={HEADER: name})
    assert replayed.status_code == cassette.status
    assert replayed.headers["content-type"] == cassette.content_type
    assert replayed.headers[HEADER] == name
    assert replayed.content == originals[name] == cassette.body
    # The model alias selects it too, on any upstream of the mock.
    aliased = replayer.post(f"/any-upstream{path}", json={**body, "model": MODEL_PREFIX + name})
    assert aliased.content == originals[name]


def test_a_replayed_get_keeps_its_answer(
    replayer: httpx.Client, originals: dict[str, bytes]
) -> None:
    replayed = replayer.get("/v1/models", headers={HEADER: "orig-models"})
    assert replayed.status_code == 200
    assert replayed.content == originals["orig-models"]


def test_a_replay_is_logged_as_one(replayer: httpx.Client, originals: dict[str, bytes]) -> None:
    tag = f"t-{uuid.uuid4().hex[:8]}"
    headers = {HEADER: "orig-chat-stream", "x-mock-tag": tag}
    replayer.post("/v1/chat/completions", json=chat(stream=True), headers=headers)
    [entry] = replayer.get("/_mock/requests", params={"tag": tag}).json()["requests"]
    assert entry["outcome"] == "replayed"
    assert entry["sent_bytes"] == len(originals["orig-chat-stream"])


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def test_an_unknown_cassette_is_an_openai_404(replayer: httpx.Client) -> None:
    by_header = replayer.post("/v1/chat/completions", json=chat(), headers={HEADER: "no-such"})
    error = assert_openai_error(by_header, 404, "cassette_not_found")
    assert "no-such" in error["message"]
    by_model = replayer.post("/v1/chat/completions", json=chat(model=f"{MODEL_PREFIX}no-such"))
    assert assert_openai_error(by_model, 404, "cassette_not_found")["param"] == "model"
    # The mock is still there, and answers a request that names no cassette as always.
    assert replayer.post("/v1/chat/completions", json=chat("still here")).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "name"),
    [
        ("/v1/responses", {"model": "m", "input": "x"}, "orig-chat"),
        ("/v1/chat/completions", chat(), "orig-chat-stream"),
        ("/v1/chat/completions", chat(stream=True), "orig-chat"),
        ("/v1/chat/completions", chat(stream=True), "orig-responses-stream"),
    ],
    ids=["other-endpoint", "stream-for-whole", "whole-for-stream", "responses-on-chat"],
)
def test_a_cassette_that_does_not_fit_the_request_is_a_400(
    replayer: httpx.Client, path: str, body: dict[str, Any], name: str
) -> None:
    assert_openai_error(
        replayer.post(path, json=body, headers={HEADER: name}), 400, "cassette_mismatch"
    )


def test_a_bad_cassette_name_or_file_is_a_400(replayer: httpx.Client, recorded: Recording) -> None:
    (recorded.out / "broken.json").write_text("{not json")
    for name in ["broken", "../outside"]:
        response = replayer.post("/v1/chat/completions", json=chat(), headers={HEADER: name})
        error = assert_openai_error(response, 400, "invalid_cassette")
        assert str(recorded.out) not in error["message"]  # no local path in an error body
