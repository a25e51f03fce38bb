"""Locate files shipped in ``cfg/`` (installed as the ``fcm_cfg`` package)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def cfg_file(name: str) -> Path:
    """Path of a file in fcm's ``cfg/`` folder; raises FileNotFoundError with the name if absent."""
    path = Path(str(resources.files("fcm_cfg") / name))
    if not path.is_file():
        raise FileNotFoundError(f"fcm configuration file '{name}' is missing from {path.parent}")
    return path


DEFAULT_JDE_CFG = "jde_1088x608.cfg"
