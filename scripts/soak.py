"""The soak: switchyard at a fixed rate for a minute or more, watched for errors, latency drift,
memory growth and leaked file descriptors.

    uv run --group bench python scripts/soak.py [--quick] [--rate 1000] [--duration 60]
        [--no-build] [--results-dir reports/soak] [--max-rss-growth KIB_PER_MIN] ...

Markdown on stdout; soak.json, soak.md and soak.png under --results-dir (reports/soak/).
Exit code 1 if any request failed. `uv run nox -s soak` runs it with --no-build after building.
The work is in `harness.perf.soak`.
"""

from __future__ import annotations

import sys

from harness.perf.soak import main

if __name__ == "__main__":
    sys.exit(main())
