"""More stack-file mistakes, each reported with the file and the key (see test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runtime.config import ConfigError, load_stack_config

SERVICE = '\n[services.proxy]\ncommand = ["bin/proxy"]\n'


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[stack]\nmock = "upstream"\n' + SERVICE, "stack.mock", "no service named 'upstream'"),
        ("services = 3\n", "services", "expected a table, got int"),
        ('stack = "proxy"\n' + SERVICE, "stack", "expected a table, got str"),
        ("[services]\nproxy = [1]\n", "services.proxy", "expected a table, got list"),
        (SERVICE + 'build = "cargo build"\n', "services.proxy.build", "list of strings"),
        (SERVICE + "health = 1\n", "services.proxy.health", "expected a string, got int"),
        (SERVICE + "port = true\n", "services.proxy.port", "got True"),
        (SERVICE + "port = 0\n", "services.proxy.port", "got 0"),
        (SERVICE + 'env = "A=1"\n', "services.proxy.env", "expected a table, got str"),
        (SERVICE + "config_template = 5\n", "services.proxy.config_template", "got int"),
        (SERVICE + "startup_timeout = true\n", "services.proxy.startup_timeout", "got True"),
        (SERVICE + 'stop_grace = "5"\n', "services.proxy.stop_grace", "got '5'"),
        ("[services.proxy]\n", "services.proxy.command", "non-empty list"),
    ],
)
def test_a_mistake_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path, tmp_path)
    assert str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
    assert problem in str(caught.value)
    assert caught.value.path == path and caught.value.key == key


def test_a_valid_service_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(SERVICE)
    config = load_stack_config(path, tmp_path)
    proxy = config.proxy_service()
    assert config.mock is None
    assert proxy.port == "report" and proxy.health.kind == "tcp"
    assert proxy.build == [] and proxy.env == {} and proxy.config_template is None
    assert proxy.startup_timeout == 30.0 and proxy.stop_grace == 5.0
