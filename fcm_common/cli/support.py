"""What every fcm command shares: one-line errors, progress bars, result tables.

Commands never show a traceback for bad input: :class:`FcmCommand` turns click usage errors and
:class:`~fcm_common.core.errors.FcmError` into ``error: ...`` on stderr with a non-zero exit status.
Set ``FCM_DEBUG=1`` to get the traceback of an unexpected failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fcm_common.coding.identifiers import hex_id
from fcm_common.coding.rate import effective_fps
from fcm_common.core.device import DEVICE_CHOICES
from fcm_common.core.errors import FcmError
from fcm_common.model.bundled import BUNDLED_JDE_NAME, choose_network, load_network

stderr_console = Console(stderr=True)
if not stderr_console.is_terminal:  # tables on stderr (stdout carries a stream): as wide as stdout's
    stderr_console = Console(stderr=True, highlight=False, width=160)
stdout_console = Console(highlight=False)
if not stdout_console.is_terminal:  # logs and pipes: do not squeeze tables into 80 columns
    stdout_console = Console(highlight=False, width=160)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (or SIGHUP): like Ctrl-C, it
    unwinds the command, so that ``finally`` blocks and context managers run (temporary folders
    are removed, codec processes killed, half-written outputs deleted) before the process exits.
    A BaseException, so that no ``except Exception`` swallows it."""


class _Interrupted(BaseException):
    """Ctrl-C, carried past click (which would print a blank line before its own message)."""


def _raise_terminated(signum, frame):
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def termination_raises():
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread while the command runs (the
    default action kills the process on the spot and leaves its temporary folders behind)."""
    import threading

    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return
    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, _raise_terminated)
        except (ValueError, OSError):  # not settable here
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def fail(message: str, status: int = EXIT_ERROR) -> None:
    """Print ``error: message`` on one line of stderr and exit."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    sys.exit(status)


class _OneLineErrors:
    """Failures are one ``error:`` line instead of usage text or a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            with termination_raises():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except (click.Abort, _Interrupted, KeyboardInterrupt):
            fail("interrupted", EXIT_INTERRUPTED)
        except Terminated as exc:
            fail(f"terminated ({exc})", EXIT_TERMINATED)
        except click.UsageError as exc:
            fail(f"{exc.format_message()} (see {self.name} --help)", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message())
        except FcmError as exc:
            fail(str(exc))
        except MemoryError:
            fail("out of memory")
        except OSError as exc:  # a file the command reads or writes (permission, disk full, ...)
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("FCM_DEBUG") == "1":
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (set FCM_DEBUG=1 for a traceback)")
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        sys.exit(0)


class FcmCommand(_OneLineErrors, click.Command):
    """A click command with one-line errors."""


class FcmGroup(_OneLineErrors, click.Group):
    """A click command group with one-line errors (its subcommands' too)."""


class AliasedOption(click.Option):
    """An option whose former names still work but are hidden from ``--help`` (one name per
    meaning across the commands; a renamed option keeps its old name for a release)."""

    def __init__(self, *args, hidden_aliases: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    @contextlib.contextmanager
    def _shown_names(self):
        opts = self.opts
        self.opts = [o for o in opts if o not in self.hidden_aliases] or opts
        try:
            yield
        finally:
            self.opts = opts

    def get_help_record(self, ctx):
        with self._shown_names():
            return super().get_help_record(ctx)

    def get_error_hint(self, ctx):
        with self._shown_names():
            return super().get_error_hint(ctx)


def option(*decls: str, aliases: Sequence[str] = (), **attrs):
    """``click.option`` with ``aliases``: former names that keep working, hidden from ``--help``."""
    if not aliases:
        return click.option(*decls, **attrs)
    names = [d for d in decls if d.startswith("-")]
    dest = [d for d in decls if not d.startswith("-")]
    return click.option(*names, *aliases, *dest, cls=AliasedOption, hidden_aliases=tuple(aliases), **attrs)


DEVICE_HELP = "Where the networks run: auto (the GPU when torch sees one, else the CPU), cpu or cuda."


def device_option(func):
    """``--device auto|cpu|cuda``."""
    return click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True,
                        help=DEVICE_HELP)(func)


def progress(transient: bool = False) -> Progress:
    """A progress bar on stderr (silent when stderr is not a terminal, as in pipelines and tests)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=transient,
        disable=not stderr_console.is_terminal,
    )


def stage_progress(bar: Progress):
    """A ``(stage, done increment, total)`` callback that shows one bar per stage."""
    tasks = {}

    def advance(stage: str, n: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.advance(tasks[stage], n)

    return advance


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], console: Console | None = None) -> None:
    """A short result table on stdout (or on ``console``: stderr when stdout carries a stream)."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    (console or stdout_console).print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


class SkipStatus:
    """Frames a live encoder skipped, reported as they happen: on the progress bar's line (a
    terminal), and on stderr at the first skip (a warning) and then at most every ``every`` seconds
    while more are skipped (a ``status:`` line), so that a log shows them too."""

    def __init__(self, stage: str, bar: Progress | None, fps: float, max_latency: float | None = None,
                 who: str = "encoder", every: float = 10.0):
        self.stage, self.bar, self.fps, self.max_latency, self.who, self.every = stage, bar, fps, max_latency, who, every
        self.skipped = 0
        self.last: float | None = None

    def update(self, frames: int, skipped: int) -> None:
        if skipped == self.skipped:
            return
        self.skipped = skipped
        text = (f"{skipped} frame{'s' if skipped > 1 else ''} skipped, "
                f"{effective_fps(self.fps, frames, skipped):.1f} of {self.fps:g} fps")
        if self.bar is not None:
            for task in self.bar.tasks:
                if task.description.startswith(self.stage):
                    self.bar.update(task.id, description=f"{self.stage} ({text})")
        now = time.monotonic()
        if self.last is None:
            bound = f" to keep the latency under {self.max_latency:g} s (--max-latency)" if self.max_latency else ""
            if self.who == "encoder":
                warn(f"behind the source: whole frames are skipped{bound}; {text} so far")
            else:
                warn(f"the encoder is behind its source and skips frames (time passes for the tracker, rows keep "
                     f"the source's frame numbers); {text} so far")
            self.last = now
        elif now - self.last >= self.every:
            stderr_console.print(f"status: {text} so far", highlight=False, soft_wrap=True)
            self.last = now


def warn(message: str) -> None:
    """``warning: message`` on one line of stderr."""
    text = " ".join(str(message).split())
    stderr_console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)


def two_sizes(text: str, form: str = "WxH", example: str = "640x480") -> tuple[int, int]:
    """``AxB`` of two positive integers -> (A, B); ``form`` names them in the error ("WxH", "HxW")."""
    a, sep, b = str(text).lower().partition("x")
    if not sep or not a.isdigit() or not b.isdigit() or int(a) < 1 or int(b) < 1:
        raise click.BadParameter(f"'{text}' is not {form} of positive integers (e.g. {example})")
    return int(a), int(b)


def size_type(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H)."""
    return two_sizes(text)


def weights_option(func):
    """``--weights PATH|random``, defaulting to $FCM_JDE_WEIGHTS, then to the bundled JDE."""
    return click.option(
        "--weights",
        envvar="FCM_JDE_WEIGHTS",
        metavar="PATH|random",
        help="JDE checkpoint: the official jde.1088x608.uncertainty.pt or one fcm-train-jde wrote; 'random' for "
        "seeded random weights (smoke tests only). Default: $FCM_JDE_WEIGHTS, else the bundled JDE-576x320-fcm.",
    )(func)


def jde_cfg_option(func):
    """``--jde-cfg PATH``: the Darknet cfg of the network given with ``--weights``."""
    return click.option(
        "--jde-cfg",
        type=click.Path(path_type=Path),
        help="Darknet cfg of the network given with --weights (default: the cfg an fcm-train-jde checkpoint "
        "carries, else the shipped JDE-1088x608 cfg; the bundled JDE-576x320-fcm carries its own).",
    )(func)


def open_network(weights: str | None, jde_cfg: Path | None, device, header=None, what: str = "the bitstream"):
    """The JDE a command runs (``--weights``/``--jde-cfg``). With a stream's ``header`` and no
    ``--weights``, the bundled JDE must be the network the header names: else say which one it needs."""
    choice = choose_network(weights)
    if choice.bundled and jde_cfg is not None:
        raise FcmError("--jde-cfg goes with --weights (the bundled JDE carries its own cfg)")
    if choice.weights is None:
        stderr_console.print("[yellow]warning:[/] random JDE weights: detections and tracks are meaningless")
    model = load_network(choice, device, jde_cfg)
    model.bundled = choice.bundled
    if header is not None:
        require_network(model, header, what)
    return model


def require_network(model, header, what: str = "the bitstream") -> None:
    """With the bundled JDE (no ``--weights``), a stream made with other weights names them."""
    if getattr(model, "bundled", False) and hex_id(model.weights_id) != header.jde_id:
        raise FcmError(
            f"{what} was encoded with JDE weights {header.jde_id.hex()}, not the bundled {BUNDLED_JDE_NAME} "
            f"({hex_id(model.weights_id).hex()}): pass the encoder's --weights"
        )
