"""`python -m harness.mock --host 127.0.0.1 --port 0 --port-file PATH [--cassettes DIR]`"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from harness.mock import replay
from harness.mock.app import start
from harness.mock.serving import serve_until_stopped


async def serve(host: str, port: int, port_file: Path | None) -> None:
    runner, bound_port = await start(host, port)
    await serve_until_stopped(
        runner, bound_port, port_file, lambda bound: f"mock listening on http://{host}:{bound}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.mock", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    parser.add_argument("--port-file", type=Path, help="where to write the bound port")
    parser.add_argument(
        "--cassettes",
        type=Path,
        help=f"the folder of cassettes to replay (default: ${replay.CASSETTES_ENV}, else "
        "the shipped tests/cassettes/)",
    )
    args = parser.parse_args()
    if args.cassettes is not None:
        os.environ[replay.CASSETTES_ENV] = str(args.cassettes.resolve())
    asyncio.run(serve(args.host, args.port, args.port_file))


if __name__ == "__main__":
    main()
