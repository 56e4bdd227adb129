"""Cassettes: one recorded upstream exchange, as a JSON file the mock can replay byte for byte.

A cassette holds the request (method, endpoint, the upstream URL, headers, body), the answer's
status and headers, and its body as the chunks the recorder read off the network, each with
its offset in milliseconds after the answer's headers arrived. A chunk is kept as `text` when it
is UTF-8, else as `base64`, so joining the chunks gives back the exact bytes.

Nothing secret is kept (`Scrubber`): the values of the secret headers are replaced, and so is
every occurrence of a secret's value anywhere in the exchange (headers, URL, bodies).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

FORMAT = "switchyard-cassette/1"
SUFFIX = ".json"
# A cassette's name is its file name without the suffix: no path separators, no `..`.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
REDACTED = "<redacted>"

# Headers whose values are credentials or identify an account: never kept.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
    }
)
# Query parameters that carry keys on some OpenAI-compatible servers (`?key=`, `?api-key=`).
SECRET_QUERY = frozenset(
    {"key", "api-key", "api_key", "apikey", "token", "access_token", "sig", "signature"}
)
# A secret value shorter than this is not searched for in the rest of the exchange (its header
# is still replaced): a short value such as a cookie's `1` would blank out unrelated text.
MIN_SECRET_LENGTH = 8


class CassetteError(ValueError):
    """A cassette file cannot be read: missing, not JSON, or not in this format."""


class UnknownCassette(CassetteError):
    """No cassette of that name exists in the folder."""


# --------------------------------------------------------------------------- the format


@dataclass
class Chunk:
    at_ms: float
    data: bytes

    def to_json(self) -> dict[str, Any]:
        try:
            return {"at_ms": round(self.at_ms, 3), "text": self.data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"at_ms": round(self.at_ms, 3), "base64": base64.b64encode(self.data).decode()}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Chunk:
        at_ms = float(value["at_ms"])
        if "text" in value:
            return cls(at_ms, str(value["text"]).encode("utf-8"))
        return cls(at_ms, base64.b64decode(value["base64"], validate=True))


@dataclass
class Cassette:
    """One exchange. `endpoint` is the path after the upstream's base URL (`chat/completions`);
    `source` says where it was recorded: `kind` ("mock" or "real"), `upstream` (its base URL,
    credentials redacted) and `recorded_at` (UTC, ISO 8601)."""

    name: str
    source: dict[str, Any]
    method: str
    endpoint: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: list[tuple[str, str]]
    headers_ms: float = 0.0
    chunks: list[Chunk] = field(default_factory=list)
    # False when the answer did not arrive whole (the client or the upstream left mid-body).
    complete: bool = True

    @property
    def body(self) -> bytes:
        return b"".join(chunk.data for chunk in self.chunks)

    def response_header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.response_headers if key == wanted), None)

    @property
    def content_type(self) -> str:
        return self.response_header("content-type") or "application/json"

    @property
    def streamed(self) -> bool:
        """Whether the recorded request asked for a stream (`"stream": true`)."""
        body = self.request_json()
        return isinstance(body, dict) and body.get("stream") is True

    def request_json(self) -> Any:
        try:
            return json.loads(self.request_body)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "source": self.source,
            "request": {
                "method": self.method,
                "endpoint": self.endpoint,
                "url": self.url,
                "headers": self.request_headers,
                **_body_json(self.request_body),
            },
            "response": {
                "status": self.status,
                "headers": [list(pair) for pair in self.response_headers],
                "headers_ms": round(self.headers_ms, 3),
                "complete": self.complete,
                "chunks": [chunk.to_json() for chunk in self.chunks],
            },
        }

    @classmethod
    def from_json(cls, value: Any) -> Cassette:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise CassetteError(f"not a cassette (expected format {FORMAT!r})")
        try:
            request, response = value["request"], value["response"]
            return cls(
                name=str(value["name"]),
                source=dict(value["source"]),
                method=str(request["method"]),
                endpoint=str(request["endpoint"]),
                url=str(request["url"]),
                request_headers={str(k): str(v) for k, v in request["headers"].items()},
                request_body=_body_from_json(request),
                status=int(response["status"]),
                response_headers=[(str(k), str(v)) for k, v in response["headers"]],
                headers_ms=float(response.get("headers_ms", 0.0)),
                chunks=[Chunk.from_json(chunk) for chunk in response["chunks"]],
                complete=bool(response.get("complete", True)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CassetteError(f"malformed cassette: {error!r}") from None


def _body_json(body: bytes) -> dict[str, Any]:
    """A request body as JSON when it is JSON (readable; it is never replayed), else as text
    or base64."""
    if not body:
        return {"body_text": ""}
    try:
        return {"body_json": json.loads(body)}
    except ValueError:
        pass
    try:
        return {"body_text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}


def _body_from_json(request: Mapping[str, Any]) -> bytes:
    if "body_json" in request:
        return json.dumps(request["body_json"]).encode()
    if "body_base64" in request:
        return base64.b64decode(request["body_base64"], validate=True)
    return str(request.get("body_text", "")).encode("utf-8")


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None and ".." not in name


def path_of(folder: Path, name: str) -> Path:
    if not valid_name(name):
        raise CassetteError(f"invalid cassette name {name!r}: use letters, digits, '.', '_', '-'")
    return folder / f"{name}{SUFFIX}"


def save(folder: Path, cassette: Cassette) -> Path:
    """Write atomically: a mock replaying from the folder never reads half a file."""
    path = path_of(folder, cassette.name)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(cassette.to_json(), indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return path


def load(folder: Path, name: str) -> Cassette:
    path = path_of(folder, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnknownCassette(f"no cassette named {name!r}") from None
    try:
        return Cassette.from_json(json.loads(text))
    except ValueError as error:
        raise CassetteError(f"cassette {name!r}: {error}") from None


def names(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob(f"*{SUFFIX}") if valid_name(path.stem))


# --------------------------------------------------------------------------- scrubbing


def header_secrets(name: str, value: str) -> list[str]:
    """The secret values a header carries: the whole value, the token of `Bearer <token>`,
    the value of each cookie."""
    name = name.lower()
    if name not in SECRET_HEADERS:
        return []
    found = [value.strip()]
    scheme, _, token = value.strip().partition(" ")
    if token and scheme.lower() in {"bearer", "basic", "token"}:
        found.append(token.strip())
    if name in {"cookie", "set-cookie"}:
        cookies = value.split(";") if name == "cookie" else value.split(";")[:1]
        found += [part.partition("=")[2].strip() for part in cookies]
    return found


class Scrubber:
    """Removes secrets from everything a cassette keeps. It knows the secrets it is given (the
    key from the environment) and learns those of each exchange's secret headers and query."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *values: str) -> None:
        for value in values:
            if len(value) >= MIN_SECRET_LENGTH:
                self._secrets.add(value)
                # As it appears in a URL or a form body.
                self._secrets.add(quote(value, safe=""))

    def learn(self, headers: Iterable[tuple[str, str]], url: str = "") -> None:
        for name, value in headers:
            self.add(*header_secrets(name, value))
        for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
            if name.lower() in SECRET_QUERY:
                self.add(value)

    @property
    def _ordered(self) -> list[str]:
        # Longest first, so a secret that contains another is replaced whole.
        return sorted(self._secrets, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._ordered:
            value = value.replace(secret, REDACTED)
        return value

    def data(self, value: bytes) -> bytes:
        for secret in self._ordered:
            value = value.replace(secret.encode(), REDACTED.encode())
        return value

    def headers(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (name.lower(), REDACTED if name.lower() in SECRET_HEADERS else self.text(value))
            for name, value in pairs
        ]

    def url(self, url: str) -> str:
        """Credentials in the URL (`user:pass@`) and secret query parameters are redacted."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            cleaned = [(k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in pairs]
            query = urlencode(cleaned, safe="<>")
        return self.text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    def chunks(self, chunks: Sequence[Chunk]) -> list[Chunk]:
        """The chunks with every secret replaced; chunks that a secret spans are merged first
        (at the first one's time), so a secret split across two network reads goes too."""
        merged = list(chunks)
        body = b"".join(chunk.data for chunk in merged)
        for secret in self._ordered:
            needle = secret.encode()
            start = body.find(needle)
            while start != -1:
                merged = _merge_span(merged, start, start + len(needle))
                start = body.find(needle, start + 1)
        return [Chunk(chunk.at_ms, self.data(chunk.data)) for chunk in merged]


def _merge_span(chunks: list[Chunk], start: int, end: int) -> list[Chunk]:
    """Merge the chunks that hold bytes [start, end) of the joined body into one."""
    result: list[Chunk] = []
    offset = 0
    pending: Chunk | None = None
    for chunk in chunks:
        chunk_start, chunk_end = offset, offset + len(chunk.data)
        offset = chunk_end
        if chunk_end > start and chunk_start < end:
            pending = chunk if pending is None else Chunk(pending.at_ms, pending.data + chunk.data)
            continue
        if pending is not None:
            result.append(pending)
            pending = None
        result.append(chunk)
    if pending is not None:
        result.append(pending)
    return result
