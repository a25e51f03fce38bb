"""advMSFC checkpoints: the model with everything needed to use it safely.

A checkpoint records the split point, the architecture (channel count included), the feature
statistics (inside the state dict), the code range used for quantisation, the QACT table, the
identifier of the JDE weights it was trained against, the training settings, and, for resuming,
the optimiser state and step. Its *model identifier* (in every advmsfc bitstream) is derived from
the architecture and weights. Loading refuses a checkpoint made for another split or other JDE
weights, with the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fcm_common.core.atomic import atomic_path
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import get_split
from fcm_common.msfc.detection_code import DETECTIONS_CODE_VERSION
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, MSFCConfigError, scale_order
from fcm_common.msfc.qact import QACTTable

FORMAT = "fcm-advmsfc"
VERSION = 1


class CheckpointError(FcmError, ValueError):
    """An advMSFC checkpoint that cannot be used here."""


@dataclass
class MSFCCheckpoint:
    split: str
    model: AdvMSFC
    jde_weights_id: str
    qact: QACTTable
    code_range: tuple[float, float] | None = None
    training: dict = field(default_factory=dict)
    step: int = 0
    optimizer_state: dict | None = None
    generator_state: torch.Tensor | None = None
    path: Path | None = None  # the file it was read from

    @property
    def model_id(self) -> str:
        return model_digest(self.model)


def model_digest(model: AdvMSFC) -> str:
    """sha256 over the architecture and every tensor of the state dict (hex)."""
    digest = hashlib.sha256(json.dumps(model.arch.to_dict(), sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, ckpt: MSFCCheckpoint, half: bool = False) -> None:
    """Write atomically (a crash never leaves half a checkpoint); ``half`` stores float16 weights."""
    state = {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "split": ckpt.split,
        "arch": ckpt.model.arch.to_dict(),
        "state_dict": state,
        "model_id": ckpt.model_id,
        "jde_weights_id": ckpt.jde_weights_id,
        "qact": ckpt.qact.to_dict(),
        "code_range": list(ckpt.code_range) if ckpt.code_range else None,
        "training": ckpt.training,
        "step": ckpt.step,
        "optimizer": ckpt.optimizer_state,
        "generator": ckpt.generator_state,
    }
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_checkpoint(
    path: str | Path, split: str | None = None, jde_weights_id: str | None = None, device="cpu"
) -> MSFCCheckpoint:
    """Read and check a checkpoint; ``split``/``jde_weights_id`` given = must match."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"advMSFC model not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"cannot read {path} as an advMSFC checkpoint (not one, or damaged)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an advMSFC checkpoint (no '{FORMAT}' format tag)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} is not supported (expected {VERSION})")
    ck_split = data["split"]
    wanted = get_split(split).name if split is not None else ck_split
    if wanted != ck_split:
        raise CheckpointError(f"{path} was trained for split '{ck_split}', not '{wanted}'")
    if jde_weights_id is not None and data["jde_weights_id"] != jde_weights_id:
        raise CheckpointError(
            f"{path} was trained against JDE weights {data['jde_weights_id'][:16]}..., these are {jde_weights_id[:16]}...: "
            "retrain it for these weights (fcm-train)"
        )
    recorded = data["arch"].get("code_version") if isinstance(data.get("arch"), dict) else None
    if data["arch"].get("fusion") == "detections" and recorded != DETECTIONS_CODE_VERSION:
        raise CheckpointError(f"{path}: a detections code of version {recorded}; this fcm reads version "
                              f"{DETECTIONS_CODE_VERSION} (refit the model with this fcm: fcm-train --steps 0)")
    try:
        arch = MSFCArch.from_dict(data["arch"])
        model = AdvMSFC(arch, scale_order(ck_split))
        model.load_state_dict(data["state_dict"])
    except (MSFCConfigError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the recorded architecture ({str(exc).splitlines()[0]})") from None
    if model_digest(model) != data["model_id"]:
        raise CheckpointError(f"{path}: the weights do not match the recorded model identifier (damaged file)")
    model.eval().requires_grad_(False)
    return MSFCCheckpoint(
        split=ck_split,
        model=model.to(device),
        jde_weights_id=data["jde_weights_id"],
        qact=QACTTable.from_dict(data["qact"]),
        code_range=tuple(data["code_range"]) if data.get("code_range") else None,
        training=data.get("training") or {},
        step=int(data.get("step", 0)),
        optimizer_state=data.get("optimizer"),
        generator_state=data.get("generator"),
        path=path,
    )


def export_for_inference(ckpt: MSFCCheckpoint, path: str | Path) -> int:
    """Write the model alone with float16 weights (half the size; what fcm ships) and return the
    file size. Its identifier is that of the rounded weights, as every loader computes it."""
    model = AdvMSFC(ckpt.model.arch, ckpt.model.order)
    model.load_state_dict({k: v.detach().cpu().half().float() if v.is_floating_point() else v
                           for k, v in ckpt.model.state_dict().items()})
    light = MSFCCheckpoint(split=ckpt.split, model=model, jde_weights_id=ckpt.jde_weights_id, qact=ckpt.qact,
                           code_range=ckpt.code_range, training=ckpt.training, step=ckpt.step)
    save_checkpoint(path, light, half=True)
    return Path(path).stat().st_size


def record_qact(path: str | Path, table: QACTTable) -> None:
    """Replace the QACT table a model file carries (e.g. with one ``fcm-calibrate`` measured for it).
    The weights and the model identifier stay as they are: the table is not part of the identifier
    (the channel count of a stream is in its header)."""
    load_checkpoint(path)  # refuse anything that is not a readable advMSFC checkpoint
    data = torch.load(path, map_location="cpu", weights_only=True)
    data["qact"] = table.to_dict()
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
