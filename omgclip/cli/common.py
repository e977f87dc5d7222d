"""Helpers every command module of the CLI shares: defaults read from the config
dataclasses (written once), a subcommand with description and examples, ``CLASS=N`` lists."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

from omgclip.errors import OmgclipError


def config_default(config_cls, name: str):
    """The default of field ``name`` of a config dataclass: defaults are written once."""
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{config_cls.__name__} has no default for {name!r}")


def add_command(sub, name: str, help: str, description: str, examples: str):
    return sub.add_parser(name, help=help, description=description,
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def key_value_ints(items: Sequence[str] | None) -> dict[int, int] | None:
    """``['1=10', 'fear=10']`` -> ``{1: 10, 2: 10}``."""
    if not items:
        return None
    from omgclip.labels import parse_label

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OmgclipError(f"--rare-stride expects CLASS=STRIDE, got {item!r}")
        try:
            out[parse_label(key)] = int(value)
        except ValueError as exc:
            raise OmgclipError(f"--rare-stride {item!r}: {exc}") from None
    return out
