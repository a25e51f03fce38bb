"""Locate files shipped in ``cfg/`` (installed as the ``fcm_cfg`` package)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from fcm_common.core.errors import FcmError


def cfg_file(name: str) -> Path:
    """Path of a file in fcm's ``cfg/`` folder; raises FileNotFoundError with the name if absent."""
    path = Path(str(resources.files("fcm_cfg") / name))
    if not path.is_file():
        raise FileNotFoundError(f"fcm configuration file '{name}' is missing from {path.parent}")
    return path


DEFAULT_JDE_CFG = "jde_1088x608.cfg"
BUNDLED_JDE_CFG = "jde_576x320.cfg"  # the network fcm ships trained weights for (docs/models.md)


def read_toml(path: str | Path, what: str, error: type[FcmError] = FcmError) -> dict:
    """A TOML file as a dict; a missing or malformed file is ``error`` naming ``what``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
