"""Proxy configs of the gateway tests, as data: upstreams, models, tenant keys and the
sections a test sets, written by the one TOML writer (`harness.runtime.config.toml_document`).

No test edits config text: a setting of `[server]` (a body limit, a shutdown grace, another
bind address) is a key of `proxy_config(server=...)`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.runtime.config import ConfigError, render, toml_document

# `[server]` of every test proxy unless a test says otherwise: loopback, a port of its own.
SERVER_DEFAULTS: dict[str, Any] = {"bind": "127.0.0.1", "port": 0}


def with_upstream(template: str, url: str = "http://127.0.0.1:9") -> str:
    """A proxy config template with `${upstream.url}` filled in by the harness's own renderer,
    as the benchmark's and the soak's stacks fill it; any other placeholder is an error."""

    def unknown(name: str) -> ConfigError:
        return ConfigError(Path("<proxy config>"), name, "unknown placeholder")

    return render(template, {"upstream.url": url}, unknown)


def mock_upstream(name: str, **settings: Any) -> dict[str, Any]:
    """An upstream served by the shared mock under its own name. `responses = true` (the
    default) passes /v1/responses through unchanged, so what a test sends is what the mock
    logs; with `responses = false` the mock serves it as a chat-only server, whose
    /v1/responses is a 404."""
    settings = {"responses": True, **settings}
    chat_only = "" if settings["responses"] else "chat-only/"
    return {"name": name, "base_url": f"${{mock.url}}/{chat_only}{name}/v1", **settings}


def unreachable_upstream(name: str, **settings: Any) -> dict[str, Any]:
    """An upstream where nothing listens: every attempt is a connect error."""
    return {
        "name": name,
        "base_url": "http://127.0.0.1:${unused_port}/v1",
        "connect_timeout_ms": 1000,
        **settings,
    }


def model(name: str, upstreams: list[str], **settings: Any) -> dict[str, Any]:
    return {"name": name, "upstreams": upstreams, **settings}


@dataclass
class Keys:
    """An admin key and one key per tenant, handed to the proxy through its environment."""

    admin: str
    tenants: dict[str, str]

    @classmethod
    def make(cls, *tenants: str) -> Keys:
        return cls(
            admin=f"sk-gw-admin-{uuid.uuid4().hex}",
            tenants={tenant: f"sk-gw-{tenant}-{uuid.uuid4().hex}" for tenant in tenants},
        )

    def env(self) -> dict[str, str]:
        env = {"GW_ADMIN_KEY": self.admin}
        for index, key in enumerate(self.tenants.values()):
            env[f"GW_TENANT_KEY_{index}"] = key
        return env

    def auth_section(self) -> dict[str, Any]:
        return {
            "admin_key_env": "GW_ADMIN_KEY",
            "keys": [
                {"tenant": tenant, "key_env": f"GW_TENANT_KEY_{index}"}
                for index, tenant in enumerate(self.tenants)
            ],
        }

    def all(self) -> list[str]:
        return [self.admin, *self.tenants.values()]


def proxy_config(
    upstreams: list[dict[str, Any]],
    models: list[dict[str, Any]],
    *,
    server: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    keys: Keys | None = None,
    ledger: dict[str, Any] | None = None,
    prices: dict[str, dict[str, float]] | None = None,
    slo: dict[str, Any] | None = None,
) -> str:
    """A proxy config template (`${mock.url}` and friends are filled in by the harness).

    `server` is merged over SERVER_DEFAULTS; a key set to None is left out (the proxy's own
    default decides). The cache is off unless a test asks for it: the default memory cache
    would answer repeated identical requests itself, and the routing tests count what reaches
    the upstreams.
    """
    merged = {**SERVER_DEFAULTS, **(server or {})}
    sections: dict[str, Any] = {
        "server": {key: value for key, value in merged.items() if value is not None},
        "upstreams": upstreams,
        "models": models,
        "retry": retry,
        "health": health,
        "cache": cache if cache is not None else {"backend": "off"},
        "ledger": ledger,
        "slo": slo,
        "auth": keys.auth_section() if keys is not None else None,
        "prices": prices or None,
    }
    # An empty list of upstreams or models is no table at all, as in a hand-written config.
    written = {name: table for name, table in sections.items() if table not in (None, [])}
    return toml_document(written)
