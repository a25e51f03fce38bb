"""Registries of feature methods and inner codecs (the CompressAI ``@register_*`` pattern).

A method or codec is one class in one module of ``coding/methods`` or ``coding/codecs``; the
package imports every module it holds, and the class decorator files the class under its name and
its bitstream code. The bitstream, the encoder, the decoder and the commands only ask the registry,
so adding a method or codec touches no other file.

A class also declares its command-line options as :class:`CliOption` records: the commands turn
them into click options (:mod:`fcm_common.cli.options`), so each option is declared once.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import click

from fcm_common.core.errors import FcmError

T = TypeVar("T")


@dataclass(frozen=True)
class CliOption:
    """A click option (``decls``, ``attrs`` as for ``click.option``), declared by a method or codec.

    ``exclusive``: giving it with another method is an error (an option that may come from an
    environment variable, and so be set without being meant, is not exclusive).
    """

    decls: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)
    exclusive: bool = True

    @property
    def name(self) -> str:
        """The keyword argument click passes the value as."""
        return click.Option(list(self.decls), **self.attrs).name

    @property
    def flag(self) -> str:
        return max((d for d in self.decls if d.startswith("--")), key=len)


def cli_option(*decls: str, exclusive: bool = True, **attrs) -> CliOption:
    return CliOption(tuple(decls), attrs, exclusive)


class Registry(Generic[T]):
    """Classes by name and by bitstream code; names and codes are unique."""

    def __init__(self, kind: str, error: type[Exception] = FcmError):
        self.kind = kind
        self.error = error
        self._by_name: dict[str, type[T]] = {}
        self._by_code: dict[int, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        name, code = getattr(cls, "name", ""), getattr(cls, "code", -1)
        if not name or not isinstance(code, int) or not 0 <= code <= 255:
            raise TypeError(f"a {self.kind} class needs a name and a bitstream code 0..255 ({cls.__name__})")
        for other in (self._by_name.get(name), self._by_code.get(code)):
            if other is not None and other is not cls:
                raise TypeError(f"{self.kind} {name!r} (code {code}) clashes with {other.__name__}")
        self._by_name[name] = cls
        self._by_code[code] = cls
        return cls

    def __getitem__(self, name: str) -> type[T]:
        try:
            return self._by_name[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} '{name}' (choose from {', '.join(self.names())})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[type[T]]:
        return iter(self._by_name[n] for n in self.names())

    def by_code(self, code: int) -> type[T] | None:
        return self._by_code.get(code)

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted (the order of command-line choices)."""
        return tuple(sorted(self._by_name))


def import_modules(package: str, path, skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of a package (their class decorators register them)."""
    for module in pkgutil.iter_modules(path):
        if module.name not in skip and not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
