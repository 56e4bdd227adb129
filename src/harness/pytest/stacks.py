"""What the pytest fixtures stand on: finding or starting the stack a test run uses.

One stack serves a whole pytest run, xdist workers included. It is, in order of preference:
1. an external proxy: `SWITCHYARD_BASE_URL` (and optionally `SWITCHYARD_MOCK_URL`);
2. a named stack: `SWITCHYARD_STACK` (set by `invoke setup-and-test`);
3. the stack `invoke up` started, when it is up (unless `SWITCHYARD_REUSE=0`);
4. a stack started for this run, owned by the pytest controller process, which stops it at the
   end of the session; if the controller is killed, the next command sweeps it as an orphan.
Workers share it: tests isolate themselves with their own `x-mock-tag`.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from filelock import FileLock

from harness.runtime import owners, paths, stack
from harness.runtime.process import Service, tail

# Set by the controller before xdist starts its workers, so they all know whose run it is; it
# also makes the run the keeper of every server started under it (`owners.keeper_for`).
RUN_OWNER_ENV = owners.RUN_OWNER_ENV


@dataclass
class StackHandle:
    proxy_url: str
    mock_url: str | None
    stack: stack.Stack | None = None
    logs: dict[str, Path] = field(default_factory=dict)

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        return {name: tail(path, lines) for name, path in self.logs.items() if path.exists()}

    def dead_services(self) -> list[str]:
        """Services of the stack that are no longer running (a crash mid-test)."""
        if self.stack is None:
            return []
        live = self.stack.services()
        return [name for name in self.stack.config.services if name not in live]


def run_owner_pid() -> int:
    return int(os.environ.get(RUN_OWNER_ENV, os.getpid()))


def run_stack_id() -> str:
    return f"pytest-{run_owner_pid()}"


def acquire_stack() -> StackHandle:
    external = os.environ.get("SWITCHYARD_BASE_URL")
    if external:
        return StackHandle(external.rstrip("/"), os.environ.get("SWITCHYARD_MOCK_URL"))
    named = os.environ.get("SWITCHYARD_STACK")
    if named:
        the_stack = stack.load(named)
        if not the_stack.is_up():
            raise RuntimeError(f"SWITCHYARD_STACK={named}, but that stack is not up")
        return handle_for(the_stack)
    default = stack.load(stack.DEFAULT_STACK)
    if os.environ.get("SWITCHYARD_REUSE", "1") != "0" and default.is_up():
        return handle_for(default)
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    own = stack.load(run_stack_id(), owner_pid=run_owner_pid())
    # xdist workers race here; the first starts the stack, the others find it up.
    with FileLock(paths.state_dir() / f"{own.id}.lock"):
        if not own.is_up():
            stack.sweep_orphans()
            own.up()
    return handle_for(own)


def release_run_stack() -> None:
    """Stop the stack this run started, if any. Called once, by the controller, at the end.
    A pytest started inside another run (a test's own nested run) inherits that run's owner,
    and so its stack id: the stack is that run's, and stays up for it."""
    if run_owner_pid() != os.getpid():
        return
    the_stack = stack.load(run_stack_id())
    if the_stack.dir.exists():
        the_stack.down()
    (paths.state_dir() / f"{the_stack.id}.lock").unlink(missing_ok=True)


def handle_for(the_stack: stack.Stack) -> StackHandle:
    live = the_stack.services()
    mock_name = the_stack.config.mock
    return StackHandle(
        proxy_url=live[the_stack.config.proxy].url,
        mock_url=live[mock_name].url if mock_name and mock_name in live else None,
        stack=the_stack,
        logs={name: the_stack.log_path(name) for name in the_stack.config.services},
    )


def private_stack(
    handle: StackHandle,
    label: str,
    services: list[str] | None = None,
    *,
    proxy_config: str | None = None,
    proxy_env: dict[str, str] | None = None,
) -> stack.Stack:
    """Some services of the stack started for one test, e.g. a proxy with its own config, or a
    Redis the test may kill. Services not started here (the mock, usually) are the shared
    stack's: `${mock.url}` in `proxy_config` points at the shared mock.

    `proxy_config` is a template like config/switchyard.toml; `proxy_env` adds to the proxy's
    environment (keys referenced by `*_env` settings). The caller stops it with `.down()`.
    """
    if handle.stack is None:
        raise RuntimeError("a private stack needs a stack started by the harness")
    inherit: dict[str, object] = {}
    for name, live in handle.stack.services().items():
        inherit[f"{name}.url"] = live.url
        inherit[f"{name}.port"] = live.port or 0
    return own_stack(
        label, services, proxy_config=proxy_config, proxy_env=proxy_env, inherit=inherit
    )


def own_stack(
    label: str,
    services: list[str] | None = None,
    *,
    proxy_config: str | None = None,
    proxy_env: dict[str, str] | None = None,
    inherit: dict[str, object] | None = None,
) -> stack.Stack:
    """Services of the stack config started on their own, owned by this test run."""
    private = stack.load(
        f"{run_stack_id()}-{label}-{uuid.uuid4().hex[:6]}",
        owner_pid=run_owner_pid(),
        inherit=inherit,
    )
    config = private.config
    if proxy_config is not None:
        private.config_texts[config.proxy] = proxy_config
    private.extra_env[config.proxy] = dict(proxy_env or {})
    private.up(only=services or [config.proxy])
    return private


def start_private_proxy(handle: StackHandle, label: str) -> tuple[stack.Stack, Service]:
    """A proxy of its own, with the stack's config, for a test that must stop or break it."""
    private = private_stack(handle, label)
    return private, private.services()[private.config.proxy]


def standalone_mock(label: str = "mock") -> tuple[stack.Stack, Service]:
    """A mock upstream of its own (the stack config's mock service alone), in a stack owned by
    this run like any private stack: `invoke status` lists it, and `invoke down` stops it if
    the run dies. The caller stops it with `.down()`."""
    private = stack.load(
        f"{run_stack_id()}-{label}-{uuid.uuid4().hex[:6]}", owner_pid=run_owner_pid()
    )
    mock = private.config.mock
    if mock is None:
        raise RuntimeError(f"{private.config.path} names no mock service")
    return private, private.up(only=[mock])[mock]


class MockControl:
    """The mock upstream's inspection and control API (`/_mock/...`)."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def requests(self, **selectors: str) -> list[dict]:
        response = self.http.get("/_mock/requests", params=selectors)
        response.raise_for_status()
        return list(response.json()["requests"])

    def counts(self, **selectors: str) -> dict:
        response = self.http.get("/_mock/counts", params=selectors)
        response.raise_for_status()
        return dict(response.json())

    def add_fault(self, fault: dict, times: int = 1, **selectors: str) -> str:
        response = self.http.post(
            "/_mock/faults", json={"fault": fault, "times": times, **selectors}
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def reset(self, **selectors: str) -> None:
        self.http.post("/_mock/reset", json=selectors).raise_for_status()

    def close(self) -> None:
        self.http.close()
