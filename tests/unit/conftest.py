"""Fixtures of the unit tier's tests of the mock's wire (test_mock_fidelity.py,
test_mock_faults.py): a mock of each test module's own, and raw HTTP to it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.pytest.mock_wire import running_mock


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with running_mock() as (url, _process):
        yield url


@pytest.fixture
def http(mock_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=10) as client:
        yield client
