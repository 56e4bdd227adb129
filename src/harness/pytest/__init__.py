"""Test support that tests and scripts import, by role:

- `fixtures`: the pytest plugin of every tier (tests/conftest.py registers it);
- `stacks`: finding or starting the stack a run uses, and private stacks of a test's own;
- `gateway`: proxies of a gateway test's own, re-exporting `proxy_configs` (configs as data),
  `calls` (one call helper for both endpoints, raw streams) and `readers` (the mock's counts,
  metrics, usage, bounded waits);
- `mock_wire`: a standalone mock and the checks of its SSE framing;
- `failure_logs`: the plugin that gathers a failed run's server logs.
"""
