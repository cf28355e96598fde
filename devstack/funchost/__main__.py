"""``python -m devstack.funchost [--script-root .] [--port 7071] [--host 127.0.0.1]``"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from devstack.funchost.host import FunctionsHost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.funchost", description=__doc__)
    parser.add_argument("--script-root", type=Path, default=Path("."), help="folder of function_app.py")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (keep it on loopback)")
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="seconds running invocations get to finish on SIGTERM/SIGINT before they are abandoned",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [host] %(levelname)s %(message)s")
    # The Azure SDK logs every AMQP link event at INFO; the host's own lines are the useful ones.
    logging.getLogger("azure").setLevel(logging.WARNING)

    host = FunctionsHost(args.script_root, args.host, args.port, args.shutdown_grace)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        host.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        host.start()
    except Exception:
        logging.getLogger("funchost").exception("the host could not start")
        host.stop()
        return 1
    while not host.stopping.wait(0.5):
        pass  # a bounded wait keeps the main thread responsive to signals
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
