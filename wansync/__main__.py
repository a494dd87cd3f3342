"""`wansync` and `python -m wansync`: for the daemon commands, signal handlers first.

Importing the CLI (structlog, watchdog, urllib3, YAML) and reading the config take a few
hundred milliseconds; a SIGTERM in that time must stop the daemon cleanly (exit 0), not
kill it. So `run` and `once` install recording handlers before importing anything else.
"""

import sys

from wansync.run import signals


def main() -> int:
    daemon = sys.argv[1:2] in (["run"], ["once"])
    if daemon:
        signals.install_early()
    from wansync.cli.main import main as cli_main

    try:
        return cli_main()
    finally:
        if daemon:
            signals.ignore_stops()


if __name__ == "__main__":
    sys.exit(main())
