"""The JDE network fcm ships (trained here, see docs/models.md) and how a command picks its network.

Without ``--weights`` every command runs the bundled network, so the design's own command lines
work on a fresh machine; ``--weights PATH`` loads the official JDE-1088x608 or any fcm-train-jde
checkpoint, ``--weights random`` gives seeded random weights for smoke tests. The decoder takes the
network its bitstream names (the header's JDE identifier) and says so when it is not at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fcm_common.core.errors import FcmError
from fcm_common.core.resources import cfg_file
from fcm_common.model.jde import JDE, load_jde

BUNDLED_JDE_NAME = "JDE-576x320-fcm"
BUNDLED_JDE_FILE = "weights/jde_576x320_fcm.pt"
RANDOM = "random"


@dataclass(frozen=True)
class NetworkChoice:
    """Which JDE a command runs: a checkpoint path (None: random weights) and a name for summaries."""

    weights: Path | None
    name: str
    bundled: bool = False


def bundled_weights() -> Path:
    """Path of the bundled JDE weights inside the installed package."""
    try:
        return cfg_file(BUNDLED_JDE_FILE)
    except FileNotFoundError as exc:
        raise FcmError(f"the bundled JDE weights are missing ({exc}); reinstall fcm or pass --weights PATH") from None


def choose_network(value: str | None) -> NetworkChoice:
    """``--weights`` (or $FCM_JDE_WEIGHTS) as a choice: absent -> bundled, 'random', or a path."""
    if not value:
        return NetworkChoice(bundled_weights(), f"{BUNDLED_JDE_NAME} (bundled)", bundled=True)
    if value == RANDOM:
        return NetworkChoice(None, "random weights (smoke test: detections are meaningless)")
    return NetworkChoice(Path(value), str(value))


def load_network(choice: NetworkChoice, device: str | torch.device = "cpu", cfg: str | Path | None = None) -> JDE:
    """The chosen JDE on ``device``; ``model.network_name`` names it for summaries."""
    model = load_jde(choice.weights, device=device, cfg=None if choice.bundled else cfg)
    model.network_name = choice.name
    return model
