"""Security edges (contract sections 2 and 3) that tests/mock/test_gw_auth.py leaves out: usage
reads that try to reach another tenant by the query string, the default loopback bind and the
explicit all-interfaces one, and error bodies that must never carry a key, a path on this
machine or the credentials of an upstream's URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    mock_upstream,
    model,
    proxy_config,
    read_stream,
    read_until_closed,
    records_of,
    request_body,
    stream_error_event,
    unique,
    wait_for,
)
from harness.runtime import paths

pytestmark = pytest.mark.security

UPSTREAM_KEY = "sk-sec-upstream-env-key-6b1d"
INLINE_UPSTREAM_KEY = "sk-sec-upstream-inline-key-90aa"
URL_USER, URL_PASSWORD = "svc-user", "pa55word-in-the-url"
# What a client might paste into a body by mistake; it must not come back in an error either.
PASTED_KEY = "sk-live-pasted-into-the-body-0c0ffee"


def listening_addresses(gateway: Gateway) -> set[str]:
    connections = psutil.Process(gateway.proxy.record.pid).net_connections(kind="inet")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}


def log_containing(gateway: Gateway, needle: str) -> str | None:
    text = gateway.log_text()
    return text if needle in text else None


# --------------------------------------------------------------------------- tenants


@pytest.fixture
def tenants(gateways: Gateways, tag: str) -> tuple[Gateway, Keys]:
    upstream = unique("sec-tenants")
    keys = Keys.make("acme", "globex")
    config = proxy_config(
        [mock_upstream(upstream)], [model("m", [upstream])], keys=keys, ledger={"backend": "memory"}
    )
    gateway = gateways.start(config, keys.env())
    for tenant, key in keys.tenants.items():
        response = gateway.http(key).post(
            PATHS[CHAT], json=request_body(CHAT, "m", f"{tenant} was here")
        )
        assert response.status_code == 200
    return gateway, keys


@pytest.mark.parametrize(
    "query",
    [
        "tenant=globex",
        "tenant=globex&tenant=acme",
        "tenant=acme&tenant=globex",
        "tenant=GLOBEX",
        "tenant=globex%00",
        "tenant=%20globex",
        "tenant=*",
        "tenant=",
    ],
)
@pytest.mark.parametrize("path", ["/v1/usage", "/admin/usage"])
def test_a_tenant_key_never_reads_another_tenant_whatever_the_query(
    tenants: tuple[Gateway, Keys], path: str, query: str
) -> None:
    gateway, keys = tenants
    response = httpx.get(
        f"{gateway.url}{path}?{query}",
        headers={"authorization": f"Bearer {keys.tenants['acme']}"},
        timeout=10,
    )
    assert "globex" not in response.text.lower().replace("tenant=globex", "")
    if path == "/admin/usage":
        assert response.status_code == 403
        return
    if response.status_code == 200:
        body = response.json()
        assert body["tenant"] == "acme"
        assert {record["tenant"] for record in body["records"]} == {"acme"}
    else:
        assert response.status_code in {400, 403}
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "path", ["/admin/usage/", "/ADMIN/usage", "/admin//usage", "/v1/../admin/usage"]
)
@pytest.mark.slow
def test_admin_data_is_not_reachable_by_a_path_variant(
    tenants: tuple[Gateway, Keys], path: str
) -> None:
    gateway, keys = tenants
    for key in (keys.tenants["acme"], None):
        headers = {"authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(timeout=10) as client:
            request = client.build_request("GET", f"{gateway.url}/", headers=headers)
            request.url = request.url.copy_with(raw_path=path.encode())
            response = client.send(request)
        assert response.status_code in {401, 403, 404}, (path, response.text)
        assert "tenants" not in response.json()


@pytest.mark.slow
def test_the_admin_key_reads_every_tenant_and_tenant_keys_only_their_own(
    tenants: tuple[Gateway, Keys],
) -> None:
    gateway, keys = tenants
    for tenant in ("acme", "globex"):
        assert records_of(gateway, keys.admin, tenant=tenant)["tenant"] == tenant
    assert records_of(gateway, keys.tenants["globex"], tenant="globex")["tenant"] == "globex"


# --------------------------------------------------------------------------- binding


def test_the_default_bind_is_loopback_only(stack: testing.StackHandle, tag: str) -> None:
    upstream = unique("sec-bind")
    # No `bind` at all: the default decides.
    config = proxy_config(
        [mock_upstream(upstream)], [model("m", [upstream])], server={"bind": None}
    )
    assert "bind =" not in config
    with Gateways(stack, tag) as gateways:
        gateway = gateways.start(config)
        assert listening_addresses(gateway) == {"127.0.0.1"}
        assert "all interfaces" not in gateway.log_text()


def test_all_interfaces_must_be_asked_for_and_are_warned_about(
    gateways: Gateways, tag: str
) -> None:
    upstream = unique("sec-bind-all")
    config = proxy_config(
        [mock_upstream(upstream)], [model("m", [upstream])], server={"bind": "0.0.0.0"}
    )
    gateway = gateways.start(config)
    assert listening_addresses(gateway) == {"0.0.0.0"}
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
    log = wait_for(lambda: log_containing(gateway, "all interfaces"), what="the warning")
    [line] = [line for line in log.splitlines() if "all interfaces" in line]
    assert "WARN" in line and "0.0.0.0" in line


# --------------------------------------------------------------------------- error bodies


@pytest.fixture
def leaky(gateways: Gateways, tmp_path: Path) -> tuple[Gateway, Keys, list[str]]:
    """A gateway with every kind of secret configured, and the list of them."""
    keyed, chat_only, down = unique("sec-keyed"), unique("sec-chat"), unique("sec-down")
    keys = Keys.make("acme")
    ledger_path = tmp_path / "private-ledger-dir" / "ledger.sqlite3"
    ledger_path.parent.mkdir()
    config = proxy_config(
        [
            mock_upstream(keyed, api_key_env="GW_UPSTREAM_KEY", timeout_ms=500),
            mock_upstream(chat_only, responses=False),
            {
                "name": down,
                "base_url": f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:${{unused_port}}/v1",
                "api_key": INLINE_UPSTREAM_KEY,
                "connect_timeout_ms": 1000,
            },
        ],
        [model("m", [keyed]), model("t", [chat_only]), model("down", [down])],
        server={"max_body_bytes": 4096, "request_body_timeout_ms": 500},
        retry={"max_attempts": 1},
        keys=keys,
        ledger={"backend": "sqlite", "path": str(ledger_path)},
    )
    gateway = gateways.start(config, {**keys.env(), "GW_UPSTREAM_KEY": UPSTREAM_KEY})
    config_files = [str(p) for p in gateway.private.dir.rglob("*.toml")]
    assert config_files, "the rendered config is among the secrets"
    secrets = [
        *keys.all(),
        UPSTREAM_KEY,
        INLINE_UPSTREAM_KEY,
        URL_PASSWORD,
        f"{URL_USER}:",
        PASTED_KEY,
        str(tmp_path),
        str(ledger_path),
        str(paths.root()),
        str(Path.home()) + "/",
        *config_files,
    ]
    return gateway, keys, secrets


def error_bodies(gateway: Gateway, keys: Keys) -> dict[str, tuple[int, str]]:
    """Every kind of error the proxy answers, as (status, body)."""
    tenant = gateway.http(keys.tenants["acme"], timeout=30)
    bodies: dict[str, tuple[int, str]] = {}

    def keep(name: str, response: httpx.Response) -> None:
        bodies[name] = (response.status_code, response.text)

    def chat(name: str, model_name: str, headers: dict[str, str] | None = None) -> None:
        body = request_body(CHAT, model_name, "hello")
        keep(name, tenant.post(PATHS[CHAT], json=body, headers=headers))

    keep("wrong key", gateway.http(PASTED_KEY).post(PATHS[CHAT], json=request_body(CHAT, "m", "x")))
    keep(
        "key in a wrongly typed field",
        tenant.post(PATHS[CHAT], json={"model": "m", "messages": PASTED_KEY}),
    )
    keep(
        "key in a model name",
        tenant.post(PATHS[CHAT], json={"model": PASTED_KEY, "messages": []}),
    )
    keep("key in malformed JSON", tenant.post(PATHS[CHAT], content=f'{{"model": "{PASTED_KEY}'))
    keep(
        "key in a stream flag",
        tenant.post(PATHS[RESPONSES], json={"model": "m", "stream": PASTED_KEY}),
    )
    chat("connect failure", "down")
    chat("upstream 500 with a body", "m", {"x-mock-fault": "type=status;status=500;message=boom"})
    chat("upstream quoting its key", "m", {"x-mock-fault": "type=status;status=401;echo_key=1"})
    chat("upstream timeout", "m", {"x-mock-fault": "type=hang"})
    chat("broken upstream body", "m", {"x-mock-fault": "type=malformed_body"})
    chat("unknown model", "no-such-model")
    keep("too large", tenant.post(PATHS[CHAT], content=b"x" * 10_000))
    keep(
        "unknown previous response",
        tenant.post(
            PATHS[RESPONSES],
            json={"model": "t", "input": "x", "previous_response_id": "resp_nope"},
        ),
    )
    keep("unknown route", tenant.get("/v1/secrets"))
    keep("wrong method", tenant.get(PATHS[CHAT]))
    keep("bad usage query", tenant.get("/v1/usage?limit=lots"))
    keep("admin with a tenant key", tenant.get("/admin/usage"))
    keep("another tenant", tenant.get("/v1/usage?tenant=somebody"))
    stream_body = request_body(CHAT, "m", "one two three", stream=True)
    response, raw = read_stream(
        tenant, CHAT, stream_body, {"x-mock-fault": "type=disconnect;after_chunks=1"}
    )
    assert stream_error_event(CHAT, raw) is not None
    bodies["stream cut by the upstream"] = (response.status_code, raw)
    return bodies


@pytest.mark.slow
def test_error_bodies_never_carry_a_key_a_path_or_url_credentials(
    leaky: tuple[Gateway, Keys, list[str]],
) -> None:
    gateway, keys, secrets = leaky
    bodies = error_bodies(gateway, keys)
    assert bodies["upstream quoting its key"][0] == 401
    assert "<redacted>" in bodies["upstream quoting its key"][1], "the quote is kept, not the key"
    assert bodies["connect failure"][0] == 502
    assert bodies["too large"][0] == 413
    for name, (status, text) in bodies.items():
        assert status >= 400 or name.startswith("stream"), name
        if not name.startswith("stream"):
            assert set(json.loads(text)) == {"error"}, name
        for secret in secrets:
            if name == "key in a model name" and secret == PASTED_KEY:
                # Like OpenAI, the 404 names the model the client asked for: its own words.
                continue
            assert secret not in text, f"{name}: {secret!r} in {text[:300]!r}"


@pytest.mark.slow
def test_a_stalled_body_answer_carries_no_secret(
    leaky: tuple[Gateway, Keys, list[str]], tag: str
) -> None:
    gateway, keys, secrets = leaky
    with gateway.connect() as sock:
        sock.sendall(
            (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {keys.tenants['acme']}\r\nContent-Length: 100\r\n\r\n"
                f'{{"model": "{PASTED_KEY}"'
            ).encode()
        )
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 408")
    for secret in secrets:
        assert secret.encode() not in raw


def test_status_and_logs_show_no_url_credentials(
    leaky: tuple[Gateway, Keys, list[str]], tag: str
) -> None:
    gateway, keys, _ = leaky
    status = httpx.get(f"{gateway.url}/status", timeout=10).text
    assert URL_PASSWORD not in status and URL_USER not in status
    assert "127.0.0.1" in status, "the URL itself is still shown"
    request_id = f"down-{tag}"
    gateway.http(keys.tenants["acme"]).post(
        PATHS[CHAT], json=request_body(CHAT, "down", "x"), headers={"x-request-id": request_id}
    )
    log = wait_for(lambda: log_containing(gateway, request_id), what="the request's log line")
    assert "upstream request failed" in log
    for secret in (URL_PASSWORD, f"{URL_USER}:", INLINE_UPSTREAM_KEY, UPSTREAM_KEY):
        assert secret not in log


@pytest.mark.slow
def test_the_ledger_records_refused_secrets_nowhere(
    leaky: tuple[Gateway, Keys, list[str]],
) -> None:
    gateway, keys, secrets = leaky
    error_bodies(gateway, keys)
    usage: dict[str, Any] = records_of(gateway, keys.admin, tenant="acme")
    text = json.dumps(usage)
    for secret in secrets:
        if secret != PASTED_KEY:  # a model name the client chose is its own to see
            assert secret not in text
