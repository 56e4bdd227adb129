"""Tenants and keys (contract section 3, "Tenants, auth and the ledger"): who may call the model
endpoints, who may read which usage, and that no key ever reaches the proxy's log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    EACH_MODE,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    admin_usage,
    ask,
    calls,
    logged,
    mock_upstream,
    model,
    proxy_config,
    records_of,
    redacted,
    request_body,
    unique,
    usage_of,
    wait_for,
)

UPSTREAM_KEY = "sk-gw-upstream-secret-31c7"
UNKNOWN_KEY = "sk-gw-nobody-has-this-key-9e02"


def auth_gateway(gateways: Gateways) -> tuple[Gateway, Keys, str, str]:
    """Model "keyed" goes to an upstream with its own key, "keyless" to one without."""
    keyed, keyless = unique("auth-keyed"), unique("auth-keyless")
    keys = Keys.make("acme", "globex")
    config = proxy_config(
        [mock_upstream(keyed, api_key_env="GW_UPSTREAM_KEY"), mock_upstream(keyless)],
        [model("keyed", [keyed]), model("keyless", [keyless])],
        keys=keys,
    )
    gateway = gateways.start(config, {**keys.env(), "GW_UPSTREAM_KEY": UPSTREAM_KEY})
    return gateway, keys, keyed, keyless


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    assert body["error"]["message"]
    return dict(body["error"])


@pytest.mark.security
@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {UNKNOWN_KEY}", "Bearer", f"Basic {UNKNOWN_KEY}"],
    ids=["missing", "unknown", "empty", "not-bearer"],
)
@EACH_ENDPOINT
@EACH_MODE
def test_a_missing_or_unknown_key_is_refused_with_401(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    authorization: str | None,
    endpoint: str,
    stream: bool,
) -> None:
    gateway, _, keyed, _ = auth_gateway(gateways)
    headers = {"x-mock-tag": tag}
    if authorization is not None:
        headers["authorization"] = authorization
    response = httpx.post(
        f"{gateway.url}{PATHS[endpoint]}",
        json=request_body(endpoint, "keyed", "let me in", stream=stream),
        headers=headers,
        timeout=10,
    )
    error = assert_openai_error(response, 401)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert calls(mock_control, tag, keyed) == 0


@pytest.mark.slow
def test_the_sdk_sees_an_authentication_error(gateways: Gateways) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    answer = ask(gateway.sdk(UNKNOWN_KEY), CHAT, "keyed", "let me in")
    assert answer.status == 401
    assert ask(gateway.sdk(keys.tenants["acme"]), CHAT, "keyed", "my own key").status == 200


@EACH_ENDPOINT
@pytest.mark.slow
def test_tenant_and_admin_keys_may_call_the_model_endpoints(
    gateways: Gateways, endpoint: str
) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    for key in keys.all():
        assert ask(gateway.sdk(key), endpoint, "keyed", "allowed").status == 200


def test_the_upstream_gets_its_own_key_or_else_the_clients(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, keys, keyed, keyless = auth_gateway(gateways)
    sdk = gateway.sdk(keys.tenants["acme"])
    assert ask(sdk, CHAT, "keyed", "to the keyed one").status == 200
    assert ask(sdk, RESPONSES, "keyless", "to the keyless one").status == 200
    [to_keyed] = logged(mock_control, tag, keyed)
    [to_keyless] = logged(mock_control, tag, keyless)
    assert to_keyed["headers"]["authorization"] == redacted(f"Bearer {UPSTREAM_KEY}")
    assert to_keyless["headers"]["authorization"] == redacted(f"Bearer {keys.tenants['acme']}")


@pytest.mark.security
@pytest.mark.parametrize("path", ["/health", "/status", "/metrics", "/stats"])
@pytest.mark.slow
def test_operational_endpoints_are_open_and_hold_no_key(gateways: Gateways, path: str) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    # Some traffic first, so /metrics and /stats have something to show.
    ask(gateway.sdk(keys.tenants["acme"]), CHAT, "keyed", "some traffic")
    ask(gateway.sdk(UNKNOWN_KEY), CHAT, "keyed", "refused traffic")
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 200
    for secret in [*keys.all(), UPSTREAM_KEY, UNKNOWN_KEY]:
        assert secret not in response.text


@pytest.mark.security
@pytest.mark.slow
def test_a_tenant_reads_only_its_own_usage(gateways: Gateways, tag: str) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    sent: dict[str, list[str]] = {"acme": [], "globex": []}
    for tenant, count in (("acme", 2), ("globex", 1)):
        sdk = gateway.sdk(keys.tenants[tenant])
        for index in range(count):
            request_id = f"{tenant}-{index}-{tag}"
            ask(sdk, CHAT, "keyed", f"{tenant} asks", headers={"x-request-id": request_id})
            sent[tenant].append(request_id)

    for tenant, request_ids in sent.items():
        usage = records_of(gateway, keys.tenants[tenant])
        assert usage["tenant"] == tenant
        assert {record["tenant"] for record in usage["records"]} == {tenant}
        assert sorted(record["request_id"] for record in usage["records"]) == sorted(request_ids)

    refused = usage_of(gateway, keys.tenants["acme"], tenant="globex")
    assert_openai_error(refused, 403)
    assert_openai_error(usage_of(gateway, UNKNOWN_KEY), 401)


@pytest.mark.slow
def test_the_admin_key_reads_any_tenant_and_the_admin_usage(gateways: Gateways) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    for tenant, count in (("acme", 3), ("globex", 2)):
        sdk = gateway.sdk(keys.tenants[tenant])
        for index in range(count):
            ask(sdk, RESPONSES, "keyed", f"{tenant} asks {index}")

    for tenant in ("acme", "globex"):
        as_admin = records_of(gateway, keys.admin, tenant=tenant)
        as_tenant = records_of(gateway, keys.tenants[tenant])
        assert as_admin["tenant"] == tenant
        assert as_admin["totals"] == as_tenant["totals"]
        assert as_admin["records"] == as_tenant["records"]

    response = admin_usage(gateway, keys.admin)
    assert response.status_code == 200, response.text
    tenants = response.json()["tenants"]
    assert tenants["acme"]["requests"] == 3
    assert tenants["globex"]["requests"] == 2
    for tenant in ("acme", "globex"):
        assert tenants[tenant] == records_of(gateway, keys.tenants[tenant])["totals"]


@pytest.mark.security
def test_admin_endpoints_refuse_tenant_keys(gateways: Gateways) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    assert_openai_error(admin_usage(gateway, keys.tenants["acme"]), 403)
    assert_openai_error(admin_usage(gateway, UNKNOWN_KEY), 401)


@pytest.mark.slow
def test_a_refused_request_leaves_no_record(gateways: Gateways) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    assert ask(gateway.sdk(UNKNOWN_KEY), CHAT, "keyed", "refused").status == 401
    assert ask(gateway.sdk(keys.tenants["acme"]), CHAT, "keyed", "accepted").status == 200
    tenants = admin_usage(gateway, keys.admin).json()["tenants"]
    assert sum(totals["requests"] for totals in tenants.values()) == 1


@pytest.mark.security
@pytest.mark.slow
def test_keys_never_appear_in_the_proxy_log(gateways: Gateways, tag: str) -> None:
    gateway, keys, _, _ = auth_gateway(gateways)
    for index, key in enumerate([*keys.all(), UNKNOWN_KEY]):
        for endpoint in (CHAT, RESPONSES):
            ask(gateway.sdk(key), endpoint, "keyed", "log me", stream=index % 2 == 1)
    usage_of(gateway, keys.tenants["acme"], tenant="globex")
    admin_usage(gateway, keys.admin)
    last = f"last-{tag}"
    ask(gateway.sdk(keys.tenants["globex"]), CHAT, "keyed", "last", headers={"x-request-id": last})

    def log_with_last_request() -> str | None:
        text = gateway.log_text()
        return text if last in text else None

    log = wait_for(log_with_last_request, what="the last request's log line")
    for secret in [*keys.all(), UPSTREAM_KEY, UNKNOWN_KEY]:
        assert secret not in log


@pytest.mark.security
@pytest.mark.slow
def test_keys_never_appear_in_any_file_the_stack_wrote(gateways: Gateways, tag: str) -> None:
    """PID files, port files, the rendered config, the ledger and the logs: no key anywhere."""
    gateway, keys, _, _ = auth_gateway(gateways)
    for index, key in enumerate([*keys.all(), UNKNOWN_KEY]):
        ask(gateway.sdk(key), CHAT, "keyed", "files", stream=index % 2 == 0)
        ask(gateway.sdk(key), RESPONSES, "keyless", "files", stream=index % 2 == 1)
    admin_usage(gateway, keys.admin)
    last = f"last-{tag}"
    ask(gateway.sdk(keys.tenants["acme"]), CHAT, "keyed", "last", headers={"x-request-id": last})
    wait_for(lambda: last in gateway.log_text(), what="the last request's log line")
    stack = gateway.private
    written = [*stack.dir.rglob("*"), *stack.log_dir.rglob("*")]
    files = [path for path in written if path.is_file()]
    assert any(path.suffix == ".pid" for path in files), "the scan covers the PID files"
    assert any(path.suffix == ".toml" for path in files), "and the rendered config"
    for path in files:
        content = path.read_bytes()
        for secret in [*keys.all(), UPSTREAM_KEY, UNKNOWN_KEY]:
            assert secret.encode() not in content, f"a key in {path}"
