"""Command-line flags generated from a configuration class, so each setting has one home.

Every field with help text becomes ``--<field-with-dashes>`` (or the ``flag`` it names), its
type and choices taken from the annotation: ``int``, ``float``, ``str`` and paths; ``bool`` as
``--x/--no-x``; ``Literal[...]`` as choices; ``tuple[int, ...]`` and lists as comma-separated
values. Flags default to "not given" so that only what the user typed overrides the
environment or the class's defaults. Used by ``anomaly score`` (:class:`ScoreOptions`),
``anomaly train`` (``TrainConfig``) and ``anomaly serve`` (the service's ``Settings``).
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr


@dataclass(frozen=True)
class Setting:
    """One field of a configuration class, as the CLI sees it."""

    name: str
    annotation: Any
    help: str
    flag: str | None = None
    metavar: str | None = None
    short: str | None = None


def dataclass_settings(cls: type, skip: Iterable[str] = ()) -> list[Setting]:
    """The fields of a dataclass that carry ``metadata={"help": ...}``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta: Mapping[str, Any] = f.metadata
        if "help" not in meta or f.name in skip:
            continue
        out.append(Setting(f.name, hints[f.name], str(meta["help"]), meta.get("flag"),
                           meta.get("metavar")))
    return out


def model_settings(model: type[BaseModel], short: Mapping[str, str] | None = None
                   ) -> list[Setting]:
    """Every field of a pydantic model (a pydantic-settings class), help from its
    description."""
    return [Setting(name, f.annotation, f.description or "", short=(short or {}).get(name))
            for name, f in model.model_fields.items()]


def _split(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in _split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _kind(annotation: Any) -> tuple[Any, tuple[Any, ...] | None, bool]:
    """(argparse type, choices, is_bool) for a field annotation (Optional unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if len(args) == 1:
            return _kind(args[0])
        if str in args:  # str | PathLike: a path given as text
            return str, None, False
    if annotation is bool:
        return None, None, True
    if origin is Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), choices, False
    if annotation in (int, float, str):
        return annotation, None, False
    if annotation in (Path, SecretStr):
        return str, None, False
    if origin is tuple and args and args[0] is int:
        return _int_tuple, None, False
    if origin in (list, collections.abc.Sequence):
        return _split, None, False
    raise TypeError(f"no CLI flag type for {annotation!r}")  # pragma: no cover


def add_arguments(parser: argparse.ArgumentParser, settings: Iterable[Setting],
                  env_prefix: str | None = None) -> None:
    """One flag per setting, default SUPPRESS so that unset flags leave the field alone."""
    for s in settings:
        flag_type, choices, is_bool = _kind(s.annotation)
        flags = [s.flag or f"--{s.name.replace('_', '-')}", *([s.short] if s.short else [])]
        text = s.help + (f" [env {env_prefix}{s.name.upper()}]" if env_prefix else "")
        text = text.replace("%", "%%")  # argparse %-formats help strings
        if is_bool:
            parser.add_argument(*flags, dest=s.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(*flags, dest=s.name, type=flag_type, choices=choices,
                                metavar=s.metavar, default=argparse.SUPPRESS, help=text)


def given(args: argparse.Namespace, settings: Iterable[Setting]) -> dict[str, Any]:
    """{field: value} for the flags the user gave."""
    return {s.name: getattr(args, s.name) for s in settings if hasattr(args, s.name)}
