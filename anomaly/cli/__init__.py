"""The ``anomaly`` command line: ``main`` (parser, errors to exit codes), one module per core
subcommand (``score``, ``evaluate``, ``info``), and ``flags`` (flags generated from config)."""

from anomaly.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
