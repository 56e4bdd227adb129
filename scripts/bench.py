"""The benchmark: what switchyard adds over calling its upstream directly.

    uv run --group bench python scripts/bench.py [--quick] [--rates 100,1000] [--duration 10]
        [--proxy-cmd "[NAME=]COMMAND {port} {upstream_url}"] [--proxy-url [NAME=]URL] ...

Markdown on stdout; bench.json, bench.md and latency.png under --results (reports/bench/).
`uv run invoke bench` and `uv run nox -s bench` do the same. The work is in `harness.perf.bench`.
"""

from __future__ import annotations

import sys

from harness.perf.bench import main

if __name__ == "__main__":
    sys.exit(main())
