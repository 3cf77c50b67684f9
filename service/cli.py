"""``anomaly serve`` (registered through the ``anomaly.commands`` entry point) and
``python -m service``. Every :class:`~service.config.Settings` field gets a flag
``--<field-with-dashes>``; flags left out keep the environment's (``ANOMALY_<FIELD>``) or
default value."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from service.config import Settings

#: Flags people type often get a short alias too.
SHORT = {"models": "-m", "port": "-p"}


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """(argparse type, is_bool) for a settings field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if annotation is bool:
        return None, True
    if annotation in (int, float):
        return annotation, False
    if annotation in (str, Path, SecretStr) or origin is list:
        return str, False  # lists are comma-separated; pydantic validates the rest
    raise TypeError(f"no CLI flag type for {annotation!r}")  # pragma: no cover


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field, default SUPPRESS so unset flags leave the field alone."""
    for name, field in Settings.model_fields.items():
        flag_type, is_bool = _flag_type(field.annotation)
        flags = [f"--{name.replace('_', '-')}"] + ([SHORT[name]] if name in SHORT else [])
        env = f"ANOMALY_{name.upper()}"
        help_text = f"{field.description or ''} [env {env}]".replace("%", "%%")
        if is_bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(*flags, dest=name, type=flag_type, default=argparse.SUPPRESS,
                                help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags given on the command line override the environment and the defaults."""
    overrides = {name: getattr(args, name) for name in Settings.model_fields
                 if hasattr(args, name)}
    return Settings(**overrides)


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
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            log_config=None, access_log=False, log_level=settings.log_level,
                            server_header=False, timeout_graceful_shutdown=10)
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
    return serve(parser.parse_args(argv))
