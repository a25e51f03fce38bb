"""The advMSFC models fcm ships, one per split point, trained for the bundled JDE (docs/models.md).

They are the default of ``--method advmsfc`` when the JDE is the bundled one, so the design's own
command line (``fcm-encode video.mp4 --qp 32 --split backbone``) works with no model flag; a decoder
finds the one an advmsfc stream names by its model identifier.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from fcm_common.core.resources import cfg_file
from fcm_common.model.splits import SPLITS

BUNDLED_MODEL_FILE = "weights/advmsfc_576x320_{split}.pt"


def bundled_model_name(split: str) -> str:
    return f"advMSFC-576x320-{split}"


def bundled_model_path(split: str) -> Path | None:
    """The shipped advMSFC checkpoint of ``split``, or None if this install has none."""
    try:
        return cfg_file(BUNDLED_MODEL_FILE.format(split=split))
    except FileNotFoundError:
        return None


@lru_cache(maxsize=1)
def _headers() -> dict[str, tuple[Path, str, str]]:
    """split -> (path, model id, JDE weights id) of every shipped model (read once)."""
    found = {}
    for split in SPLITS:
        path = bundled_model_path(split)
        if path is not None:
            # memory-mapped: only the identifiers are read here, the weights once the model is chosen
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            found[split] = (path, data["model_id"], data["jde_weights_id"])
    return found


def bundled_model_for(split: str, jde_weights_id: str) -> Path | None:
    """The shipped model for ``split`` if it was trained for these JDE weights."""
    entry = _headers().get(split)
    return entry[0] if entry and entry[2] == jde_weights_id else None


def bundled_model_by_id(model_id: bytes) -> Path | None:
    """The shipped model whose identifier a stream's header carries (truncated digest)."""
    for path, digest, _ in _headers().values():
        if bytes.fromhex(digest)[: len(model_id)] == model_id:
            return path
    return None


def is_bundled(path: Path) -> bool:
    return any(Path(path).resolve() == entry[0].resolve() for entry in _headers().values())
