"""The stack description (`config/stack.toml`) and template rendering.

Every error names the file and the key, e.g. `config/stack.toml: services.mock.port: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from harness.compat import tomllib
from harness.runtime.process import HealthCheck

# `${name}` is a placeholder; `$${` is a literal `${` (for a template that must show one, in a
# comment or a value).
PLACEHOLDER = re.compile(r"\$(\$)\{|\$\{([A-Za-z0-9_.-]+)\}")
PORT_MODES = ("pick", "report")


class ConfigError(ValueError):
    """A config file is wrong; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str, problem: str):
        self.path = Path(path)
        self.key = key
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    command: list[str]
    health: HealthCheck
    # "pick": the harness chooses a free port; "report": the service binds port 0 and writes
    # the port it got to ${port_file}; an int: that fixed port.
    port: str | int = "report"
    env: dict[str, str] = field(default_factory=dict)
    build: list[str] = field(default_factory=list)
    config_template: Path | None = None
    startup_timeout: float = 30.0
    stop_grace: float = 5.0


@dataclass(frozen=True)
class StackConfig:
    path: Path
    root: Path
    services: dict[str, ServiceConfig]
    proxy: str
    mock: str | None

    def proxy_service(self) -> ServiceConfig:
        return self.services[self.proxy]


_SERVICE_KEYS = {
    "command",
    "health",
    "port",
    "env",
    "build",
    "config_template",
    "startup_timeout",
    "stop_grace",
}


def load_stack_config(path: Path, root: Path) -> StackConfig:
    """Read and validate a stack file. Relative paths in it are relative to `root`."""
    data = _read_toml(path)
    _reject_unknown(path, "", data, {"stack", "services"})
    stack = _table(path, "stack", data.get("stack", {}))
    _reject_unknown(path, "stack", stack, {"proxy", "mock"})
    services_raw = _table(path, "services", data.get("services"))
    if not services_raw:
        raise ConfigError(path, "services", "at least one service is required")
    services = {
        name: _service(path, root, name, _table(path, f"services.{name}", raw))
        for name, raw in services_raw.items()
    }
    proxy = stack.get("proxy", "proxy")
    if proxy not in services:
        raise ConfigError(
            path, "stack.proxy", f"no service named {proxy!r} (have: {', '.join(services)})"
        )
    mock = stack.get("mock")
    if mock is not None and mock not in services:
        raise ConfigError(
            path, "stack.mock", f"no service named {mock!r} (have: {', '.join(services)})"
        )
    return StackConfig(path=path, root=root, services=services, proxy=proxy, mock=mock)


def _service(path: Path, root: Path, name: str, raw: dict[str, Any]) -> ServiceConfig:
    key = f"services.{name}"
    _reject_unknown(path, key, raw, _SERVICE_KEYS)
    command = _string_list(path, f"{key}.command", raw.get("command"))
    if not command:
        raise ConfigError(path, f"{key}.command", "a non-empty list of strings is required")
    try:
        health = HealthCheck.parse(_string(path, f"{key}.health", raw.get("health", "tcp")))
    except ValueError as exc:
        raise ConfigError(path, f"{key}.health", str(exc)) from None
    port = raw.get("port", "report")
    if not (
        port in PORT_MODES
        or (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536)
    ):
        raise ConfigError(
            path, f"{key}.port", f'expected "pick", "report" or a port number, got {port!r}'
        )
    env = _table(path, f"{key}.env", raw.get("env", {}))
    for env_key, value in env.items():
        _string(path, f"{key}.env.{env_key}", value)
    template = raw.get("config_template")
    template_path = None
    if template is not None:
        template_path = root / _string(path, f"{key}.config_template", template)
        if not template_path.is_file():
            raise ConfigError(path, f"{key}.config_template", f"no such file: {template_path}")
    return ServiceConfig(
        name=name,
        command=command,
        health=health,
        port=port,
        env=dict(env),
        build=_string_list(path, f"{key}.build", raw.get("build", [])),
        config_template=template_path,
        startup_timeout=_number(path, f"{key}.startup_timeout", raw.get("startup_timeout", 30.0)),
        stop_grace=_number(path, f"{key}.stop_grace", raw.get("stop_grace", 5.0)),
    )


def render(text: str, values: Mapping[str, object], where: Callable[[str], ConfigError]) -> str:
    """Replace `${name}` placeholders and turn `$${` into `${`; an unknown placeholder is an
    error raised via `where(name)`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${"
        name = match.group(2)
        if name not in values:
            raise where(name)
        return str(values[name])

    return PLACEHOLDER.sub(replace, text)


def toml_document(sections: Mapping[str, Any], *, comment: str = "") -> str:
    """The one TOML writer: every config the harness writes (proxy configs for tests, the
    benchmark and the soak; stack-file copies) is a document of sections given as data, so no
    caller edits config text. `comment` becomes `#` lines at the top."""
    header = "".join(f"# {line}\n".replace("# \n", "#\n") for line in comment.splitlines())
    return header + tomli_w.dumps(dict(sections))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None


def _reject_unknown(path: Path, key: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            full = f"{key}.{name}" if key else name
            raise ConfigError(path, full, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"expected a table, got {type(value).__name__}")
    return value


def _string(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, key, f"expected a string, got {type(value).__name__}")
    return value


def _string_list(path: Path, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(path, key, "expected a list of strings")
    return list(value)


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(path, key, f"expected a positive number, got {value!r}")
    return float(value)
