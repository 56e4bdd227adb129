"""The integration tier's proxy: the stack's proxy binary in front of a real OpenAI-compatible
endpoint (OPENAI_BASE_URL, default https://api.openai.com/v1), serving one model
(SWITCHYARD_INTEGRATION_MODEL, default gpt-4o-mini). Each may come from the repository's `.env`
(`harness.runtime.envfile`); the environment wins. With SWITCHYARD_RECORD_DIR set, the proxy's
upstream is a recorder in front of the endpoint, which keeps every exchange of the tier there as
a scrubbed cassette (see the README's "Record and replay")."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from harness.pytest import stacks as testing
from harness.pytest.proxy_configs import SERVER_DEFAULTS, model
from harness.pytest.recording import recording
from harness.runtime import envfile
from harness.runtime.config import toml_document
from harness.runtime.stack import Stack

# Before anything reads them: the tier's conftest imports this module first.
envfile.load_keys()
MODEL = os.environ.get("SWITCHYARD_INTEGRATION_MODEL", "gpt-4o-mini")
RECORD_DIR_ENV = "SWITCHYARD_RECORD_DIR"

# The key stays in the environment: the rendered config names the variable, never the value.
PROXY_CONFIG = toml_document(
    {
        "server": SERVER_DEFAULTS,
        "upstreams": [
            {
                "name": "real",
                "base_url": "${base_url}",
                "api_key_env": "OPENAI_API_KEY",
                "responses": True,
                "timeout_ms": 60000,
            }
        ],
        "models": [model("${model}", ["real"])],
    }
)


@contextlib.contextmanager
def real_proxy() -> Iterator[Stack]:
    """A proxy of this run's own in front of the real endpoint (through a recorder when
    SWITCHYARD_RECORD_DIR says where cassettes go), stopped on exit."""
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    with contextlib.ExitStack() as stop:
        record_dir = os.environ.get(RECORD_DIR_ENV)
        if record_dir:
            base_url = stop.enter_context(recording(Path(record_dir), base_url)).url
        inherit: dict[str, object] = {"base_url": base_url, "model": MODEL}
        proxy = testing.own_stack("integration", proxy_config=PROXY_CONFIG, inherit=inherit)
        stop.callback(proxy.down)
        yield proxy
