"""Options the coding commands share, declared once: the split point, the feature method, the codec.

``--split`` is resolved into its :class:`~fcm_common.model.splits.SplitPoint` by its click type, so
no command looks a split name up again. Methods and codecs declare their own options (see
:mod:`fcm_common.coding.registry`); the decorators here add every registered class's options to a
command and hand their values over in one dict, so a new method or codec needs no command edited.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import click

from fcm_common.coding.codecs import CODECS, DECODER_CHOICES, SHARED_OPTIONS, CodecChoice
from fcm_common.coding.methods import METHODS
from fcm_common.coding.registry import CliOption
from fcm_common.coding.stream_key import KEY_FILE_ENV, MAKE_A_KEY, MIN_KEY_BYTES, read_key_file
from fcm_common.model.splits import SPLIT_NAMES, SPLITS, SplitPoint


class SplitChoice(click.Choice):
    """``--split NAME``: one of the MPEG split points, handed to the command as its SplitPoint."""

    def __init__(self):
        super().__init__(SPLIT_NAMES)

    def convert(self, value, param, ctx):
        if isinstance(value, SplitPoint):
            return value
        return SPLITS[super().convert(value, param, ctx)]


SPLIT = SplitChoice()


def split_option(**attrs) -> Callable:
    return click.option("--split", type=SPLIT, **attrs)


def click_option(option: CliOption, **overrides) -> Callable:
    """The click decorator of a declared option (``overrides``: e.g. ``required=True``)."""
    return click.option(*option.decls, **{**option.attrs, **overrides})


def _unique(options: Iterable[CliOption], exclude: Iterable[str] = ()) -> list[CliOption]:
    out: dict[str, CliOption] = {}
    for option in options:
        if option.name not in exclude:
            out.setdefault(option.name, option)
    return list(out.values())


def _grouped(options: list[CliOption], into: str, make=dict) -> Callable:
    """Add ``options`` to a command; their values reach it as one keyword ``into`` (``make(values)``)."""
    names = [o.name for o in options]

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def command(*args, **kwargs):
            kwargs[into] = make({name: kwargs.pop(name) for name in names})
            return func(*args, **kwargs)

        command.__click_params__ = list(getattr(func, "__click_params__", []))
        for option in reversed(options):
            command = click_option(option)(command)
        return command

    return decorate


def method_options(default: str, exclude: Iterable[str] = ()) -> Callable:
    """``--method`` and the encoder-side options of every method -> ``method`` and ``method_options``."""
    options = _unique((o for cls in METHODS for o in cls.options), exclude)
    help_text = " or ".join(cls.summary for cls in METHODS) + "."

    def decorate(func: Callable) -> Callable:
        func = _grouped(options, "method_options")(func)
        return click.option("--method", type=click.Choice(METHODS.names()), default=default, show_default=True,
                            help=help_text)(func)

    return decorate


def method_decode_options(func: Callable) -> Callable:
    """The decoder-side options of every method -> ``method_options``."""
    return _grouped(_unique(o for cls in METHODS for o in cls.decode_options), "method_options")(func)


def range_help() -> str:
    """The default quantisation range of each method, for ``--range`` help."""
    return "; ".join(cls.range_help for cls in sorted(METHODS, key=lambda c: c.code) if cls.range_help)


def codec_options(default: str, help: str | None = None) -> Callable:
    """``--codec``, ``--gop`` and the encoder-side options of every codec -> ``codec`` (a CodecChoice)."""
    options = _unique([*SHARED_OPTIONS, *(o for cls in CODECS for o in cls.options)])

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def command(*args, codec, codec_options, **kwargs):
            return func(*args, codec=CodecChoice(codec, codec_options), **kwargs)

        command.__click_params__ = list(getattr(func, "__click_params__", []))
        command = _grouped(options, "codec_options")(command)
        return click.option("--codec", type=click.Choice(CODECS.names()), default=default, show_default=True,
                            help=help or "Inner codec.")(command)

    return decorate


def decoder_options(func: Callable) -> Callable:
    """``--decoder`` and the decoder-side options of every codec -> ``decoder`` and ``codec_options``."""
    func = _grouped(_unique(o for cls in CODECS for o in cls.decode_options), "codec_options")(func)
    return click.option(
        "--decoder", type=click.Choice(DECODER_CHOICES), default="auto", show_default=True,
        help="VVC decoder: auto (ffmpeg for vvenc streams, VTM's DecoderApp for vtm streams), ffmpeg or vtm.",
    )(func)


def key_file_option(help: str) -> Callable:
    """``--key-file PATH`` (or ``$FCM_STREAM_KEY_FILE``) -> ``stream_key``: the key's bytes, read and
    checked while the options are parsed (a bad key file fails before any work), or None."""

    def read(ctx, param, value):
        return None if not value else read_key_file(value)

    return click.option("--key-file", "stream_key", metavar="PATH", envvar=KEY_FILE_ENV, show_envvar=True,
                        callback=read, help=f"{help} The file's bytes are the key (at least {MIN_KEY_BYTES}; "
                        f"make one with: {MAKE_A_KEY}).")
