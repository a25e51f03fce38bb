"""Choose the torch device: ``auto`` takes the GPU when there is one."""

from __future__ import annotations

import torch

from fcm_common.core.errors import FcmError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda``/``cuda:N`` must exist."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FcmError(f"device '{name}' requested but this torch has no usable CUDA device")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FcmError(f"device '{name}' does not exist ({torch.cuda.device_count()} CUDA devices)")
        return device
    raise FcmError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
