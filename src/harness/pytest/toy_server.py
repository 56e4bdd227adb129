"""A tiny server whose misbehaviour is chosen on the command line, for the process-manager tests
(run as a script: its path is `harness.pytest.procs.TOY`).

python toy_server.py PORT [--ignore-term] [--fork-child PIDFILE [--escape]]
                          [--exit-now CODE] [--no-listen]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time

from harness.runtime.poll import wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--fork-child", metavar="PIDFILE")
    parser.add_argument("--escape", action="store_true", help="the forked child leaves the group")
    parser.add_argument("--exit-now", type=int)
    parser.add_argument("--no-listen", action="store_true")
    args = parser.parse_args()

    print(f"toy server starting on port {args.port}", flush=True)
    if args.exit_now is not None:
        print("toy server giving up on purpose", flush=True)
        sys.exit(args.exit_now)
    if args.ignore_term:
        # Says so in its log, so a test can tell that the SIGTERM arrived.
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    if args.fork_child:
        child = os.fork()
        if child == 0:
            if args.escape:
                os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # Written by the child once it is set up, so a reader never sees it half-ready.
            tmp = args.fork_child + ".tmp"
            with open(tmp, "w") as handle:
                handle.write(str(os.getpid()))
            os.replace(tmp, args.fork_child)
            while True:
                time.sleep(1)
        wait_until(lambda: os.path.exists(args.fork_child), what="the child's PID file", timeout=60)
    if args.no_listen:
        while True:
            time.sleep(1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen()
    while True:
        conn, _ = server.accept()
        conn.close()


if __name__ == "__main__":
    main()
