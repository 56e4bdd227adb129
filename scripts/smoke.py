"""Smoke check of a running switchyard stack: health, a mixed load, consistent endpoints.

    uv run python scripts/smoke.py [--start] [--requests 20] [--json] [--no-color] ...

Exit code 0 when everything passed, 1 otherwise. `uv run invoke smoke` does the same.
"""

from __future__ import annotations

import sys

from harness.checks.smoke_cli import main

if __name__ == "__main__":
    sys.exit(main())
