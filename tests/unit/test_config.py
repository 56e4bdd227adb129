"""Config errors name the file and the key; the repository's own config is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.runtime import paths
from harness.runtime.config import ConfigError, load_stack_config, render, toml_document

VALID_SERVICE: dict[str, Any] = {
    "command": ["bin/proxy", "--port", "${port}"],
    "health": "http:/health",
    "port": "pick",
}


def stack_file(stack: dict[str, Any] | None = None, **proxy: Any) -> dict[str, Any]:
    """A stack file with one service, `proxy`: the valid one, with `proxy` keys changed."""
    services = {"services": {"proxy": {**VALID_SERVICE, **proxy}}}
    return services if stack is None else {"stack": stack, **services}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def test_repository_stack_config_is_valid() -> None:
    config = load_stack_config(paths.stack_config(), paths.root())
    assert config.proxy in config.services
    assert config.mock in config.services
    assert list(config.services)[-1] == config.proxy, "the proxy starts after its upstreams"


@pytest.mark.parametrize(
    ("document", "key", "problem"),
    [
        (stack_file(colour="blue"), "services.proxy.colour", "unknown key"),
        (stack_file(port="any"), "services.proxy.port", "port number"),
        (stack_file(port=70000), "services.proxy.port", "port number"),
        (stack_file(health="smoke"), "services.proxy.health", "unknown health"),
        (stack_file(command=[]), "services.proxy.command", "non-empty"),
        (stack_file(command=[1, 2]), "services.proxy.command", "list of strings"),
        (stack_file(stop_grace=-1), "services.proxy.stop_grace", "positive number"),
        (
            stack_file(config_template="nope.toml"),
            "services.proxy.config_template",
            "no such file",
        ),
        (stack_file(env={"A": 1}), "services.proxy.env.A", "expected a string"),
        (stack_file({"proxy": "gateway"}), "stack.proxy", "no service named 'gateway'"),
        (stack_file({"flavour": 1}), "stack.flavour", "unknown key"),
        ({"stack": {}}, "services", "at least one service"),
    ],
)
def test_bad_stack_config_names_file_and_key(
    tmp_path: Path, document: dict[str, Any], key: str, problem: str
) -> None:
    path = write(tmp_path, toml_document(document))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message
    assert caught.value.key == key


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[services.proxy\n")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid TOML"):
        load_stack_config(path, tmp_path)
    with pytest.raises(ConfigError, match="file not found"):
        load_stack_config(tmp_path / "absent.toml", tmp_path)


def test_render_fills_placeholders_and_rejects_unknown_ones(tmp_path: Path) -> None:
    template = 'base_url = "${mock.url}/a/v1"\nport = ${port}\ninline = { a = 1 }\n'
    rendered = render(
        template, {"mock.url": "http://127.0.0.1:5", "port": 7}, lambda n: ConfigError("t", n, "x")
    )
    assert rendered == 'base_url = "http://127.0.0.1:5/a/v1"\nport = 7\ninline = { a = 1 }\n'
    escaped = "# $${unknown} stays literal, ${port} does not\nshell = '$${HOME}'\n"
    assert render(escaped, {"port": 7}, lambda n: ConfigError("t", n, "x")) == (
        "# ${unknown} stays literal, 7 does not\nshell = '${HOME}'\n"
    )
    with pytest.raises(ConfigError, match=r"\$\{redis.url\}"):
        render(
            "${redis.url}",
            {},
            lambda name: ConfigError(tmp_path / "t.toml", f"${{{name}}}", "unknown"),
        )
