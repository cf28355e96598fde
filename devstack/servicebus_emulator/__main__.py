"""`python -m devstack.servicebus_emulator --config FILE --host 127.0.0.1 --port 5672 --data-dir DIR`"""

from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError
from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus_emulator", description=__doc__)
    parser.add_argument("--config", required=True, help="queues, shaped like the official emulator's Config.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port")
    parser.add_argument("--data-dir", required=True, help="where the SQLite database lives")
    parser.add_argument("--admin-port", type=int, default=5300, help="HTTPS admin endpoint (0 disables it)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if logging.getLogger().level > logging.INFO:
        # The SDK hangs up without waiting for the broker's close frame, which proton logs as an error
        # ("Couldn't send: BrokenPipeError") on every disconnect: noise unless you are watching connections.
        logging.getLogger("proton").setLevel(logging.CRITICAL)
    try:
        serve(args.config, args.host, args.port, args.data_dir, args.admin_port)
    except ConfigError as error:
        print(f"servicebus-emulator: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
