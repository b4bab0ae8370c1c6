"""`chatd` / `python -m chatd`: read the settings, serve until SIGTERM or SIGINT.

`chatd account ...` is the operator's accounts command instead (account_cli.py).
"""

import logging
import os
import sys

from . import account_cli, logs
from .app import Server
from .cluster.resp import parse_address
from .config import ConfigError, describe, load_settings, parse_arguments
from .store import StoreError
from .systemd import Notifier, listen_fds
from .tls import TLSSetupError

# sysexits.h EX_CONFIG: the store file given is one chatd must not use, or
# (with --check-config) a setting is.
EXIT_CONFIG = EXIT_BAD_STORE = 78
# A bad setting at a normal start (argparse's usage errors exit 2 as well).
EXIT_BAD_SETTING = 2


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["account"]:
        return account_cli.main(argv[1:])
    arguments = parse_arguments(argv)
    checking = arguments.check_config
    try:
        config, sources = load_settings(arguments=arguments)
    except (ValueError, OSError) as exc:
        if checking:
            first = exc.problems[0] if isinstance(exc, ConfigError) else str(exc)
            print(f"chatd: {first}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"chatd: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    if checking:
        sys.stdout.write(describe(config, sources))
        return 0
    logs.configure(config.log_level, config.log_format, sys.stderr)
    if config.cluster and sources["cluster"].startswith("flag") \
            and parse_address(config.cluster).password is not None:
        logging.getLogger("chatd").warning(
            "cluster: the URL's password is on the command line, where any user of this "
            "machine can read it (ps); give it in CHATD_CLUSTER or the config file")
    server = Server(config, Notifier.from_environment(os.environ), listen_fds(os.environ))
    # Before start(), which tells systemd READY: a SIGHUP or SIGTERM sent as
    # soon as READY arrives must find its handler (it then waits in the wake
    # socket until the loop runs), not the default action that kills us.
    # A reload reads what a start reads: the same flags, the environment, the file.
    server.install_signal_handlers(lambda: load_settings(arguments=arguments)[0])
    try:
        server.start()
    except StoreError as exc:
        logging.getLogger("chatd").error("store refused: %s", exc)
        return EXIT_BAD_STORE
    except TLSSetupError as exc:
        logging.getLogger("chatd").error("TLS refused: %s", exc)
        return EXIT_CONFIG
    except OSError as exc:
        logging.getLogger("chatd").error("cannot listen on %s:%d: %s",
                                         config.host, config.port, exc.strerror)
        return 1
    return 0 if server.serve_forever() else 1


if __name__ == "__main__":
    sys.exit(main())
