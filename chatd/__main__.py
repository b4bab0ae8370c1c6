"""`chatd` / `python -m chatd`: read the settings, serve until SIGTERM or SIGINT."""

import logging
import sys

from .app import Server
from .config import load_config
from .store import StoreError

# sysexits.h EX_CONFIG: the store file given is one chatd must not use.
EXIT_BAD_STORE = 78


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
    except StoreError as exc:
        logging.getLogger("chatd").error("store refused: %s", exc)
        return EXIT_BAD_STORE
    except OSError as exc:
        logging.getLogger("chatd").error("cannot listen on %s:%d: %s",
                                         config.host, config.port, exc.strerror)
        return 1
    server.install_signal_handlers()
    return 0 if server.serve_forever() else 1


if __name__ == "__main__":
    sys.exit(main())
