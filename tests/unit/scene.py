"""Moved to `harness.pytest.scene`; this name stays until test_bench_run.py, test_nox_support.py,
test_orchestrate.py and test_smoke_cli.py import it from there."""

from harness.pytest.scene import Scene, make_scene, toy_service, write_executable

__all__ = ["Scene", "make_scene", "toy_service", "write_executable"]
