"""Every tier's fixtures and hooks are the package's pytest plugin, `harness.pytest.fixtures`."""

pytest_plugins = ["harness.pytest.fixtures"]
