"""Moved to `harness.pytest.procs`; this name stays until test_orchestrate.py imports it from
there."""

from harness.pytest.procs import TOY, gone

__all__ = ["TOY", "gone"]
