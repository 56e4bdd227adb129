"""Mock OpenAI-compatible upstream: any number of named upstreams in one process, with a
deterministic reply rule, injectable faults, and a request log (docs/contracts.md, section 1)."""

from harness.mock.app import create_app, start

__all__ = ["create_app", "start"]
