"""What every fcm command shares: one-line errors, progress bars, result tables.

Commands never show a traceback for bad input: :class:`FcmCommand` turns click usage errors and
:class:`~fcm_common.core.errors.FcmError` into ``error: ...`` on stderr with a non-zero exit status.
Set ``FCM_DEBUG=1`` to get the traceback of an unexpected failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fcm_common.coding.identifiers import hex_id
from fcm_common.core.errors import FcmError
from fcm_common.model.bundled import BUNDLED_JDE_NAME, choose_network, load_network

stderr_console = Console(stderr=True)
stdout_console = Console(highlight=False)
if not stdout_console.is_terminal:  # logs and pipes: do not squeeze tables into 80 columns
    stdout_console = Console(highlight=False, width=160)

EXIT_ERROR = 1
EXIT_USAGE = 2


def fail(message: str, status: int = EXIT_ERROR) -> None:
    """Print ``error: message`` on one line of stderr and exit."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    sys.exit(status)


class _OneLineErrors:
    """Failures are one ``error:`` line instead of usage text or a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            fail("interrupted", 130)
        except click.UsageError as exc:
            fail(f"{exc.format_message()} (see {self.name} --help)", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message())
        except KeyboardInterrupt:
            fail("interrupted", 130)
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


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A short result table on stdout."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    stdout_console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


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
    """``--jde-cfg PATH``: another Darknet cfg of JDE (default: cfg/jde_1088x608.cfg)."""
    return click.option(
        "--jde-cfg",
        type=click.Path(path_type=Path),
        help="Darknet cfg of the JDE network (default: the shipped JDE-1088x608 cfg).",
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
    if header is not None and choice.bundled and hex_id(model.weights_id) != header.jde_id:
        raise FcmError(
            f"{what} was encoded with JDE weights {header.jde_id.hex()}, not the bundled {BUNDLED_JDE_NAME} "
            f"({hex_id(model.weights_id).hex()}): pass the encoder's --weights"
        )
    return model
