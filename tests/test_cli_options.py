"""The commands' options: one name per meaning across commands, every option explained in --help,
renamed options still accepted under their old (hidden) names."""

from __future__ import annotations

import importlib

import click
import pytest
from conftest import ENTRY_POINTS, run_in_process


def _commands():
    for name, module in ENTRY_POINTS.items():
        command = importlib.import_module(module).main
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


COMMANDS = dict(_commands())
COMMANDS["fcm-train-jde"] = importlib.import_module("fcm_common.cli.train_jde").main  # not in ENTRY_POINTS


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"fcm-train-jde"}))  # its help texts: still to write
def test_every_option_has_help(name):
    command = COMMANDS[name]
    missing = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == [], f"{name}: options without help text: {missing}"


def _shown_names(name: str) -> set[str]:
    ctx = click.Context(COMMANDS[name])
    shown = set()
    for param in COMMANDS[name].params:
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record:
            shown.update(part.strip().split(" ")[0] for part in record[0].split(","))
    return shown


def test_evaluation_rules_have_one_name_everywhere():
    for name in ("fcm-eval", "fcm-track", "fcm-decode", "fcm-calibrate"):
        assert "--eval-mode" in _shown_names(name), name
    assert "--mode" not in _shown_names("fcm-eval")


@pytest.mark.parametrize("name, old, new", [
    ("fcm-eval", "--mode", "--eval-mode"),
    ("fcm-bdrate", "--method", "--interpolation"),  # --method is the feature method everywhere else
    ("fcm-ctc run", "--out", "--output"),
    ("fcm-train-jde", "--cfg", "--jde-cfg"),  # the Darknet cfg is --jde-cfg in every command
])
def test_renamed_options_are_hidden_aliases(name, old, new):
    shown = _shown_names(name)
    assert new in shown and old not in shown
    option = next(p for p in COMMANDS[name].params if new in p.opts)
    assert old in option.opts  # still parsed


def test_an_old_option_name_still_works(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,50,100,1,1,1\n")
    tracks = tmp_path / "t.txt"
    tracks.write_text("1,1,10,10,50,100,1,-1,-1,-1\n")
    old = run_in_process("fcm-eval", gt, tracks, "--mode", "mot")
    new = run_in_process("fcm-eval", gt, tracks, "--eval-mode", "mot")
    assert old.returncode == new.returncode == 0, old.stderr
    assert old.stdout == new.stdout


def test_help_texts_name_the_defaults_that_apply():
    ctx = click.Context(COMMANDS["fcm-encode"])
    jde_cfg = next(p for p in COMMANDS["fcm-encode"].params if "--jde-cfg" in p.opts).get_help_record(ctx)[1]
    assert "--weights" in jde_cfg and "JDE-576x320-fcm" in jde_cfg  # not "default: JDE-1088x608" for the bundled JDE
    for name in ("fcm-track", "fcm-decode"):
        helps = {p.opts[0]: p.help for p in COMMANDS[name].params if isinstance(p, click.Option)}
        assert helps["--buffer-mode"] and "30 frames" in helps["--buffer-mode"]
    assert "batch" in next(p.help for p in COMMANDS["fcm-track"].params if "--batch-size" in p.opts)
