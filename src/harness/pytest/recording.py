"""A recorder (`harness.mock.recorder`) in front of an upstream, started by the process manager
in a stack of its own: in front of a real endpoint's base URL, or of a mock started with it in
the same stack. `invoke record` (`harness.dev.record`) and the tests of recording use it; so can
the integration tier, by pointing its proxy's upstream at `Recording.url`.

The recorder gets the upstream's URL through its environment, not its command line, so no
credential in the URL reaches a PID file; the key travels in each request's headers, as it would
to the upstream, and is scrubbed from every cassette.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.mock import cassette
from harness.mock.cassette import Cassette, CassetteError, Scrubber
from harness.mock.recorder import ERROR_HEADER as RECORDER_ERROR_HEADER
from harness.mock.recorder import HEALTH_PATH, NAME_HEADER, UPSTREAM_ENV
from harness.mock.replay import CASSETTES_ENV
from harness.pytest import stacks as testing
from harness.runtime import paths, stack
from harness.runtime.config import ServiceConfig, StackConfig
from harness.runtime.process import HealthCheck

__all__ = [
    "NAME_HEADER",
    "RECORDER_ERROR_HEADER",
    "Cassette",
    "CassetteError",
    "Recording",
    "recording",
    "redacted_url",
    "replaying_mock",
]

RECORDER = "recorder"
MOCK = "mock"


def redacted_url(url: str, secrets: Sequence[str] = ()) -> str:
    """The URL as a cassette records it: credentials, secret query values and `secrets` gone."""
    return Scrubber(secrets).url(url)


@dataclass
class Recording:
    """A running recorder: clients (or a proxy's upstream) use `url` as the upstream's base URL."""

    stack: stack.Stack
    out: Path
    source: str

    @property
    def url(self) -> str:
        return self.stack.url(RECORDER)

    @property
    def mock_url(self) -> str | None:
        """The mock's own URL, when the recorder is in front of one."""
        return self.stack.url(MOCK) if self.source == "mock" else None

    def cassettes(self) -> list[str]:
        return cassette.names(self.out)

    def path(self, name: str) -> Path:
        return cassette.path_of(self.out, name)

    def load(self, name: str) -> Cassette:
        return cassette.load(self.out, name)


def recorder_service(out: Path, source: str, scrub_env: Sequence[str]) -> ServiceConfig:
    command = ["${python}", "-m", "harness.mock.recorder", "--out", str(out.resolve())]
    command += ["--source", source, "--port", "0", "--port-file", "${port_file}"]
    for name in scrub_env:
        command += ["--scrub-env", name]
    upstream = "${mock.url}/v1" if source == "mock" else "${upstream.url}"
    return ServiceConfig(
        name=RECORDER,
        command=command,
        health=HealthCheck("http", HEALTH_PATH),
        env={UPSTREAM_ENV: upstream},
    )


@contextlib.contextmanager
def recording(
    out: Path,
    upstream: str | None = None,
    *,
    scrub_env: Sequence[str] = (),
    label: str = "record",
    mock_replays: Path | None = None,
) -> Iterator[Recording]:
    """A recorder writing cassettes to `out`, in front of `upstream` (a base URL, such as
    `https://host/v1`), or, when it is None, of a mock of its own (its `/v1`), which replays the
    cassettes of `mock_replays` (default: its usual folder). Both are stopped on exit, and by the
    next harness command should this process die first."""
    services: dict[str, ServiceConfig] = {}
    if upstream is None:
        config = stack.load().config
        if config.mock is None:
            raise RuntimeError(f"{config.path} names no mock service to record from")
        services[MOCK] = dataclasses.replace(config.services[config.mock], name=MOCK)
    source = "real" if upstream is not None else "mock"
    services[RECORDER] = recorder_service(out, source, scrub_env)
    own = stack.Stack(
        StackConfig(
            path=Path("<recording stack>"),
            root=paths.root(),
            services=services,
            proxy=RECORDER,
            mock=MOCK if upstream is None else None,
        ),
        f"{testing.run_stack_id()}-{label}-{uuid.uuid4().hex[:6]}",
        owner_pid=testing.run_owner_pid(),
        inherit={"upstream.url": upstream.rstrip("/")} if upstream is not None else None,
    )
    if upstream is None and mock_replays is not None:
        own.extra_env[MOCK] = {CASSETTES_ENV: str(mock_replays.resolve())}
    own.up()
    try:
        yield Recording(own, out, source)
    finally:
        own.down()


@contextlib.contextmanager
def replaying_mock(folder: Path, label: str = "replay") -> Iterator[str]:
    """A mock of its own (the stack file's mock service) that replays the cassettes of `folder`;
    yields its URL, and stops it on exit."""
    private = stack.load(
        f"{testing.run_stack_id()}-{label}-{uuid.uuid4().hex[:6]}",
        owner_pid=testing.run_owner_pid(),
    )
    mock = private.config.mock
    if mock is None:
        raise RuntimeError(f"{private.config.path} names no mock service")
    private.extra_env[mock] = {CASSETTES_ENV: str(folder.resolve())}
    try:
        yield private.up(only=[mock])[mock].url
    finally:
        private.down()
