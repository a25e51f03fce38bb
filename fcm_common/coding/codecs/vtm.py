"""``vtm``: the VVC reference software (EncoderApp / DecoderApp), run as the MPEG framework runs it.

Binaries are looked for in ``--vtm-dir`` (its ``bin/`` or itself), then ``$FCM_VTM_DIR``, then
``PATH`` (``EncoderAppStatic`` or ``EncoderApp``, likewise for the decoder and ``parcat``). The
configuration file is the low-delay B one of that VTM tree (``cfg/encoder_lowdelay_vtm.cfg``, the
FCM common test conditions' choice for TVD/HiEve), or the random-access one for ``gop="ra"``.

Settings: 4:0:0, ``InputBitDepth=InternalBitDepth=OutputBitDepth=10``, the sequence's intra
period with CRA refresh (``DecodingRefreshType=1``), its frame rate, ``ConformanceWindowMode=1``,
``Level=5.1`` (6.2 for a single picture, as the framework does), ``-ts 1``.

Long sequences can be cut into intra-period chunks encoded in parallel (``jobs > 1``): chunk k
codes frames ``k*IP .. (k+1)*IP`` (one frame of overlap, both ends intra) and the chunks are
joined with VTM's ``parcat``, which drops each later chunk's leading IDR and parameter sets. The
bitstream header records that the stream was made this way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from fcm_common.coding.codecs.base import (
    CodecError,
    CodecParams,
    FrameEncoder,
    InnerCodec,
    check_frame,
    register_codec,
    run_tool,
)
from fcm_common.coding.registry import cli_option

GOP_SIZE = 8  # of VTM's low-delay configuration
MIN_LD_INTRA_PERIOD = 16  # its pictures reference up to 25 back; VTM-12.0 crashes on 8


@dataclass(frozen=True)
class VTMTools:
    encoder: Path
    decoder: Path
    parcat: Path | None
    cfg_dir: Path | None

    def cfg_for(self, gop: str, override: Path | None = None) -> Path:
        if override is not None:
            if not override.is_file():
                raise CodecError(f"vtm: configuration file not found: {override}")
            return override
        name = "encoder_lowdelay_vtm.cfg" if gop == "ld" else "encoder_randomaccess_vtm.cfg"
        if self.cfg_dir is None or not (self.cfg_dir / name).is_file():
            raise CodecError(
                f"vtm: cannot find {name} next to {self.encoder} (pass --vtm-dir with the VTM tree, or --vtm-cfg)"
            )
        return self.cfg_dir / name


def _find(names: tuple[str, ...], dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in names:
            candidate = d / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def locate_vtm(vtm_dir: str | Path | None = None) -> VTMTools:
    """Find VTM's binaries and configuration folder; CodecError if the encoder or decoder is missing."""
    roots = [Path(p) for p in (vtm_dir, os.environ.get("FCM_VTM_DIR")) if p]
    dirs = [d for root in roots for d in (root / "bin", root)]
    encoder = _find(("EncoderAppStatic", "EncoderApp"), dirs)
    decoder = _find(("DecoderAppStatic", "DecoderApp"), dirs)
    if encoder is None or decoder is None:
        where = ", ".join(str(d) for d in dirs) or "no --vtm-dir or FCM_VTM_DIR given"
        missing = "EncoderApp" if encoder is None else "DecoderApp"
        raise CodecError(
            f"vtm: {missing} not found (looked in {where} and PATH); build VTM with tools/vtm_build.sh "
            "and pass --vtm-dir or set FCM_VTM_DIR"
        )
    parcat = _find(("parcatStatic", "parcat"), dirs)
    cfg_dir = None
    for root in [*roots, encoder.parent.parent]:
        if (root / "cfg" / "encoder_lowdelay_vtm.cfg").is_file():
            cfg_dir = root / "cfg"
            break
    return VTMTools(encoder, decoder, parcat, cfg_dir)


def chunk_plan(num_frames: int, intra_period: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of each parallel chunk, overlapping by one frame."""
    chunks = []
    start = 0
    while True:
        count = min(intra_period + 1, num_frames - start)
        chunks.append((start, count))
        if start + count >= num_frames:
            return chunks
        start += intra_period


class _VTMEncoder(FrameEncoder):
    def __init__(self, codec: VTMCodec, width: int, height: int, params: CodecParams, workdir: Path):
        self.codec, self.width, self.height, self.params, self.workdir = codec, width, height, params, workdir
        self.cfg = codec.tools.cfg_for(params.gop, codec.cfg)
        self.input = workdir / "vtm_input.yuv"
        self.fh = open(self.input, "wb")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.fh.write(check_frame(frame, self.width, self.height).tobytes())
        self.frames += 1
        self.frames_written = self.frames

    def _command(self, out: Path, frames: int, skip: int = 0) -> list[str]:
        p = self.params
        cmd = [
            str(self.codec.tools.encoder), "-c", str(self.cfg), "-i", str(self.input), "-b", str(out), "-o", "",
            "-wdt", str(self.width), "-hgt", str(self.height), "-fr", str(max(int(round(p.fps)), 1)),
            "-f", str(frames), "-q", str(p.qp), "-ts", "1",
            f"--Level={'5.1' if self.frames > 1 else '6.2'}",
            f"--IntraPeriod={p.intra_period}", "--DecodingRefreshType=1",
            "--InputChromaFormat=400", "--InputBitDepth=10", "--InternalBitDepth=10", "--OutputBitDepth=10",
            "--ConformanceWindowMode=1",
        ]
        if skip:
            cmd.append(f"--FrameSkip={skip}")
        return cmd

    def finish(self) -> bytes:
        self.fh.close()
        if self.frames == 0:
            raise CodecError("vtm: no frames to encode")
        plan = chunk_plan(self.frames, self.params.intra_period)
        if self.codec.jobs <= 1 or len(plan) == 1:
            out = self.workdir / "vtm.bin"
            run_tool("VTM encoding", self._command(out, self.frames), log=self.workdir / "vtm_enc.log")
            return out.read_bytes()
        if self.codec.tools.parcat is None:
            raise CodecError("vtm: parallel encoding needs VTM's parcat, which was not found")
        parts = [self.workdir / f"vtm-part-{k:03d}.bin" for k in range(len(plan))]

        def encode(k: int) -> None:
            start, count = plan[k]
            run_tool(f"VTM encoding of chunk {k}", self._command(parts[k], count, start),
                     log=self.workdir / f"vtm_enc.log.sub_p{k}")

        with ThreadPoolExecutor(max_workers=self.codec.jobs) as pool:
            for future in [pool.submit(encode, k) for k in range(len(plan))]:
                future.result()  # re-raises the first failure
        joined = self.workdir / "vtm.bin"
        run_tool("VTM parcat", [str(self.codec.tools.parcat), *map(str, parts), str(joined)])
        self.chunked = True
        return joined.read_bytes()

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()


VTM_DIR_OPTION = cli_option("--vtm-dir", envvar="FCM_VTM_DIR", type=click.Path(path_type=Path),
                            help="VTM tree or bin folder (default $FCM_VTM_DIR, then PATH).")


@register_codec
class VTMCodec(InnerCodec):
    name = "vtm"
    code = 2
    family = "vvc"
    decoder = "vtm"
    options = (
        VTM_DIR_OPTION,
        cli_option("--vtm-cfg", type=click.Path(path_type=Path),
                   help="VTM encoder cfg (default: the tree's low-delay or random-access cfg)."),
        cli_option("--vtm-jobs", type=click.IntRange(min=1), default=1, show_default=True,
                   help="Encode intra-period chunks in parallel and join them with parcat (as the MPEG framework does)."),
    )
    decode_options = (VTM_DIR_OPTION,)

    def __init__(self, vtm_dir: str | Path | None = None, cfg: str | Path | None = None, jobs: int = 1):
        self.tools = locate_vtm(vtm_dir)
        self.cfg = Path(cfg) if cfg else None
        self.jobs = max(int(jobs), 1)

    @classmethod
    def from_options(cls, vtm_dir=None, vtm_cfg=None, vtm_jobs=1, **_) -> VTMCodec:
        return cls(vtm_dir, vtm_cfg, vtm_jobs)

    @property
    def parallel_segments(self) -> int:
        """--vtm-jobs: a segmented stream codes that many segments (intra periods) at once."""
        return self.jobs

    def open_encoder(self, width: int, height: int, params: CodecParams, workdir: Path) -> FrameEncoder:
        self.check_size(width, height, params.sample_bits)
        self.check_qp(params.qp)
        if params.gop == "ll":
            raise CodecError("vtm: the low-latency GOP (--gop ll) is VVenC's; VTM codes ld or ra")
        if params.gop == "ld" and (params.intra_period % GOP_SIZE or params.intra_period < MIN_LD_INTRA_PERIOD):
            raise CodecError(
                f"vtm: with the low-delay configuration the intra period must be a multiple of {GOP_SIZE} "
                f"and at least {MIN_LD_INTRA_PERIOD} (got {params.intra_period})"
            )
        if params.gop == "ra" and params.intra_period % 32:
            raise CodecError(f"vtm: the random-access intra period must be a multiple of 32 (got {params.intra_period})")
        return _VTMEncoder(self, width, height, params, workdir)

    def decode(
        self, payload: bytes, width: int, height: int, num_frames: int, workdir: Path, sample_bits: int = 10
    ) -> Iterator[np.ndarray]:
        self.check_size(width, height, sample_bits)
        stream = workdir / "vtm_decode.bin"
        stream.write_bytes(payload)
        out = workdir / "vtm_decoded.yuv"
        run_tool("VTM decoding", [str(self.tools.decoder), "-b", str(stream), "-o", str(out), "-d", "10"],
                 log=workdir / "vtm_dec.log")
        frame_bytes = width * height * 2
        size = out.stat().st_size if out.exists() else 0
        if size != frame_bytes * num_frames:
            raise CodecError(
                f"VTM decoded {size / frame_bytes:g} frames of {width}x{height}, the header says {num_frames}"
            )
        with open(out, "rb") as fh:
            for _ in range(num_frames):
                yield np.frombuffer(fh.read(frame_bytes), dtype="<u2").reshape(height, width).astype(np.uint16)

    def describe(self) -> str:
        return f"vtm ({self.tools.encoder})"
