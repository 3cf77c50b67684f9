"""``anomaly serve`` (registered through the ``anomaly.commands`` entry point) and
``python -m service``. Every :class:`~service.config.Settings` field gets a flag
``--<field-with-dashes>``; flags left out keep the environment's (``ANOMALY_<FIELD>``) or
default value."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from anomaly.cli.flags import add_arguments as add_setting_arguments
from anomaly.cli.flags import given, model_settings
from service.config import Settings

#: Flags people type often get a short alias too.
SHORT = {"models": "-m", "port": "-p"}


SETTINGS = model_settings(Settings, SHORT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field; unset flags leave the field to the environment."""
    add_setting_arguments(parser, SETTINGS, env_prefix="ANOMALY_")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags given on the command line override the environment and the defaults."""
    return Settings(**given(args, SETTINGS))


def serve(args: argparse.Namespace) -> int:
    """Run the service in this process until interrupted; the exit code for the shell."""
    import uvicorn

    from service import logs
    from service.main import create_app

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"error: invalid setting {where}: {first['msg']}", file=sys.stderr)
        return 2
    if not settings.models.is_dir():
        print(f"error: model repository {settings.models} is not a directory; pass --models "
              "DIR holding <name>/<version>/ bundles (train one with `anomaly train`)",
              file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:  # one socket write per response (service/transport.py)
        from service.transport import HttpProtocol
        http: type[asyncio.Protocol] | str = HttpProtocol
    except ImportError:  # pragma: no cover - an install without httptools: uvicorn's h11
        http = "auto"
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            http=http, log_config=None, access_log=False,
                            log_level=settings.log_level, server_header=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server.run()
    # uvicorn sets should_exit on a signal and started once the lifespan finished; a failed
    # start (bad repository, port in use) leaves started False.
    return 0 if server.started else 1


def register(commands: Any) -> None:
    """Entry point of group ``anomaly.commands``: add ``serve`` to the ``anomaly`` command."""
    parser = commands.add_parser(
        "serve", help="run the inference service (HTTP: /v1 REST, /v2 Open Inference "
                      "Protocol, /metrics)",
        description="Serve every bundle under --models over HTTP. Settings come from flags, "
                    "then ANOMALY_* environment variables, then defaults.")
    add_arguments(parser)
    parser.set_defaults(func=serve)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service``: the same flags as ``anomaly serve``."""
    parser = argparse.ArgumentParser(prog="python -m service",
                                     description="Run the vae-anomaly inference service.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown
        print("interrupted", file=sys.stderr)
        return 130
