"""`chatd` / `python -m chatd`: read the settings, serve until SIGTERM or SIGINT."""

import logging
import sys

from .config import load_config
from .app import Server


def main(argv=None) -> int:
    try:
        config = load_config(argv)
    except (ValueError, OSError) as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    server = Server(config)
    try:
        server.start()
    except OSError as exc:
        logging.getLogger("chatd").error("cannot listen on %s:%d: %s",
                                         config.host, config.port, exc.strerror)
        return 1
    server.install_signal_handlers()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
