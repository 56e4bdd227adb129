"""Readers of the gateway tests: what the shared mock received, the proxy's /metrics and its
usage API, bounded waits for what the proxy does in the background, and raw sockets."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.pytest import stacks as testing
from harness.runtime.poll import WaitTimeout, wait_until

T = TypeVar("T")


class Gateway(Protocol):
    """What the usage readers need of a proxy (`harness.pytest.gateway.Gateway` has it)."""

    url: str


# --------------------------------------------------------------------------- the mock


def calls(mock: testing.MockControl, tag: str, upstream: str) -> int:
    """Requests the mock received for this upstream, from this test."""
    return int(mock.counts(tag=tag)["upstreams"].get(upstream, {}).get("total", 0))


def logged(mock: testing.MockControl, tag: str, upstream: str) -> list[dict[str, Any]]:
    return mock.requests(tag=tag, upstream=upstream)


# --------------------------------------------------------------------------- waiting


def wait_for(
    condition: Callable[[], T], *, what: str, timeout: float = 5.0, interval: float = 0.02
) -> T:
    """`harness.runtime.poll.wait_until` at a steady `interval` (some conditions sample a
    rate, so the pace is theirs), failing the test with a message naming what was awaited."""
    try:
        return wait_until(condition, what=what, timeout=timeout, first=interval, cap=interval)
    except WaitTimeout as timeout_error:
        raise AssertionError(str(timeout_error)) from None


# --------------------------------------------------------------------------- raw sockets


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset counts as closed)."""
    received = bytearray()
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        received += piece
    return bytes(received)


# --------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """A parsed Prometheus exposition, by sample name (`switchyard_requests_total`, ...)."""

    samples: list[Sample]
    families: set[str]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples, families = [], set()
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            samples.extend(family.samples)
        return cls(samples, families)

    def select(self, name: str, **labels: str) -> list[Sample]:
        return [
            sample
            for sample in self.samples
            if sample.name == name
            and all(sample.labels.get(key) == value for key, value in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        return math.fsum(sample.value for sample in self.select(name, **labels))

    def has(self, name: str) -> bool:
        return any(sample.name == name for sample in self.samples)


# --------------------------------------------------------------------------- the usage API


def usage_of(gateway: Gateway, key: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/v1/usage",
        params=params,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def admin_usage(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/admin/usage", headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def records_of(gateway: Gateway, key: str, **params: Any) -> dict[str, Any]:
    response = usage_of(gateway, key, limit=10_000, **params)
    assert response.status_code == 200, response.text
    return dict(response.json())
