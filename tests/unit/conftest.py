"""Fixtures of the unit tier's tests of the mock's wire (test_mock_fidelity.py,
test_mock_faults.py): a mock of each test module's own, and raw HTTP to it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from harness.pytest.mock_wire import running_mock


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with running_mock() as (url, _process):
        yield url


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """One TLS context for every test's client: httpx builds a new one for each client, and
    loading the CA bundle takes tens of milliseconds. The mock speaks plain HTTP anyway."""
    return ssl.create_default_context()


@pytest.fixture
def http(mock_url: str, tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=10, verify=tls) as client:
        yield client
