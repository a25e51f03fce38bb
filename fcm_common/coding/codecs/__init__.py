"""Inner codecs: ``vvenc`` (default, from PyPI), ``vtm`` (reference software) and ``lossless``."""

from __future__ import annotations

from pathlib import Path

from fcm_common.coding.codecs.base import CodecError, CodecParams, FrameEncoder, InnerCodec

CODEC_NAMES = ("vvenc", "vtm", "lossless")


def make_codec(name: str, vtm_dir: str | Path | None = None, vtm_cfg: str | Path | None = None, vtm_jobs: int = 1) -> InnerCodec:
    """An inner codec by name (the VTM options only matter for ``vtm``)."""
    if name == "vvenc":
        from fcm_common.coding.codecs.vvenc import VVencCodec

        return VVencCodec()
    if name == "vtm":
        from fcm_common.coding.codecs.vtm import VTMCodec

        return VTMCodec(vtm_dir, vtm_cfg, vtm_jobs)
    if name == "lossless":
        from fcm_common.coding.codecs.lossless import LosslessCodec

        return LosslessCodec()
    raise CodecError(f"unknown codec '{name}' (choose from {', '.join(CODEC_NAMES)})")


__all__ = ["CODEC_NAMES", "CodecError", "CodecParams", "FrameEncoder", "InnerCodec", "make_codec"]
