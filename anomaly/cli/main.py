"""The ``anomaly`` command: its parser, and the one place that turns errors into a message
and an exit code. Core subcommands register from this package; others (train and demo from
``training``, serve from ``service``) through the ``anomaly.commands`` entry-point group, so
the core never imports torch or the web stack.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from anomaly import __version__
from anomaly.cli import evaluate, info, score
from anomaly.errors import AnomalyError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly",
        description="Anomaly detection with VAE reconstruction probability: train on normal "
                    "data, score, evaluate, serve.")
    parser.add_argument("--version", action="version", version=f"vae-anomaly {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (score, evaluate, info):
        module.register(commands)
    for entry in importlib.metadata.entry_points(group="anomaly.commands"):
        try:
            entry.load()(commands)
        except ImportError as exc:  # an extra that is not installed: its commands are absent
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s",
                                              entry.name, exc)
        except Exception as exc:  # a broken plugin must not take the core commands down
            logging.getLogger(__name__).warning("command plugin %s failed to load: %s",
                                                entry.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AnomalyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so, keep the trace one env var away
        if os.environ.get("ANOMALY_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (set ANOMALY_DEBUG=1 for the "
              "traceback and report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
