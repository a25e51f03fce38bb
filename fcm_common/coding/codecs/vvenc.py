"""``vvenc``: VVC through the ffmpeg binary of imageio-ffmpeg (libvvenc encoder, native decoder).

Frames are sent as yuv420p10le (libvvenc's only input format) with ``ChromaFormatIDC=400``, so
the stream is true 4:0:0 10-bit and the constant chroma planes are never coded; decoding gives
``gray10le``. The QP, preset and frame rate are passed explicitly, perceptual QP adaptation is off
(``-qpa 0``), the intra period is set in frames (``IntraPeriod``; ffmpeg's ``-period`` is in
seconds) with ``POC0IDR=1`` so that the first picture is an IDR. ``gop="ld"`` is VVenC's low-delay
configuration (``GOPSize=8:PicReordering=0:DecodingRefreshType=none``, pictures coded in display
order, an IDR every intra period: the same QP cascade and reference lists as VTM's low-delay B
cfg); ``gop="ra"`` its random-access one with CRA refresh.

Presets: ``faster`` .. ``slower`` are VVenC's presets (the effort of its search) set up for
features the way ``make bench-codec`` found closest to VTM's low-delay B cfg (docs/codecs.md): no
motion-compensated temporal pre-filter (``MCTF=0``: it filters the *input*, so the decoder would
reconstruct something other than the features) and hence no block-importance QP map (``BIM=0``); explicit multiple
transform sets and sub-block transforms (``MTS=1:SBT=2``: the features' fine texture pays for
them); in low delay VTM's four reference pictures (``NumRefPics=4``; VVenC's presets use one or
two). ``vvenc-faster`` .. ``vvenc-slower`` are VVenC's presets untouched (fcm's presets before;
docs/results.md was coded with ``vvenc-faster``). Every encoding session codes one picture at a
time (``TRANSPORT_SETTINGS``).
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import click
import numpy as np

from fcm_common.coding.codecs.base import (
    CodecError,
    CodecParams,
    FrameEncoder,
    InnerCodec,
    check_frame,
    command_failure,
    register_codec,
)
from fcm_common.coding.registry import cli_option

VVENC_PRESETS = ("faster", "fast", "medium", "slow", "slower")
PRESETS = VVENC_PRESETS + tuple(f"vvenc-{p}" for p in VVENC_PRESETS)
DEFAULT_PRESET = "medium"
FEATURE_SETTINGS = ("MCTF=0", "BIM=0", "MTS=1", "SBT=2")  # see the module docstring
LOW_DELAY_REFERENCES = "NumRefPics=4"


# Every encoding session: no frame-parallel encoding. With pictures in flight on several threads,
# libvvenc can answer ffmpeg's end-of-stream drain without a picture, which ffmpeg takes for
# "drained": the last pictures, or on short sequences all of them, were lost (ffmpeg exit status 0,
# an empty or short stream), depending on thread timing. The stream is the same; only the
# frame-level speed-up is lost.
TRANSPORT_SETTINGS = ("MaxParallelFrames=0",)


def preset_settings(preset: str, gop: str) -> tuple[str, list[str]]:
    """VVenC's preset and the -vvenc-params settings fcm's preset adds to it."""
    if preset.startswith("vvenc-"):
        return preset.removeprefix("vvenc-"), []
    return preset, [*FEATURE_SETTINGS, *([LOW_DELAY_REFERENCES] if gop == "ld" else [])]


def base_settings(intra_period: int) -> list[str]:
    """-vvenc-params of every stream: the intra period in frames, an IDR first, 4:0:0."""
    return [f"IntraPeriod={intra_period}", "POC0IDR=1", "ChromaFormatIDC=400"]


MID_CHROMA = 512


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary (imageio-ffmpeg's, or $IMAGEIO_FFMPEG_EXE), checked for VVC support."""
    try:
        import imageio_ffmpeg  # third-party, imported when a codec first runs: a missing one is a CodecError

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise CodecError(f"vvenc: no ffmpeg binary ({exc}); install imageio-ffmpeg") from None
    try:
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60).stdout
        decoders = subprocess.run([exe, "-hide_banner", "-decoders"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CodecError(f"vvenc: cannot run {exe} ({exc})") from None
    if " libvvenc " not in encoders:
        raise CodecError(f"vvenc: {exe} has no libvvenc encoder")
    if " vvc " not in decoders:
        raise CodecError(f"vvenc: {exe} has no VVC decoder")
    return exe


def _rate(fps: float) -> str:
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


class VVencSession(FrameEncoder):
    """One libvvenc encoding through ffmpeg with explicit VVenC settings (``-vvenc-params``, to which
    ``TRANSPORT_SETTINGS`` are added). The codec builds them from :class:`CodecParams`;
    benchmarks/vvenc_settings.py passes raw ones, for experiments with settings no preset has."""

    def __init__(self, width: int, height: int, fps: float, qp: int, vvenc_preset: str, settings: list[str],
                 threads: int, workdir: Path):
        self.width, self.height = width, height
        self.out = workdir / "vvenc.266"
        self.log = workdir / "vvenc.log"
        self.cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s:v", f"{width}x{height}", "-r", _rate(fps),
            "-i", "pipe:0",
            "-c:v", "libvvenc", "-preset", vvenc_preset, "-qp", str(qp), "-qpa", "0",
            "-threads", str(threads), "-vvenc-params", ":".join([*settings, *TRANSPORT_SETTINGS]),
            "-f", "vvc", str(self.out),
        ]
        self.chroma = np.full(2 * (height // 2) * (width // 2), MID_CHROMA, dtype="<u2").tobytes()
        self.log_fh = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log_fh)

    def _failure(self) -> CodecError:
        self.log_fh.close()
        return command_failure("vvenc encoding", self.cmd, self.log.read_text(errors="replace"), self.proc.poll())

    def write(self, frame: np.ndarray) -> None:
        # One write per picture, luma and chroma together. Written in two, a process stopped between
        # them (Ctrl-C, SIGTERM, a kill) left ffmpeg a luma plane without its chroma: it logged "Invalid
        # buffer size, packet size 7168 < expected frame_size 10752" (a 64x56 picture) and still
        # finished the stream, exit status 0, into the temporary folder of a process that was gone.
        data = check_frame(frame, self.width, self.height).tobytes() + self.chroma
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            self.proc.wait()
            raise self._failure() from None

    def finish(self) -> bytes:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.wait() != 0 or not self.out.is_file():
            raise self._failure()
        self.log_fh.close()
        payload = self.out.read_bytes()
        if not payload:
            raise CodecError("vvenc: libvvenc produced an empty stream although ffmpeg reported success")
        return payload

    def abort(self) -> None:
        """Kill ffmpeg *before* its input is closed: it never sees the end of a partial picture, and
        it is gone before the caller removes the temporary folder it writes in."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:  # a broken pipe: the process is gone anyway
                pass
        self.log_fh.close()


@register_codec
class VVencCodec(InnerCodec):
    name = "vvenc"
    code = 1
    family = "vvc"
    decoder = "ffmpeg"
    qp_range = (0, 63)  # libvvenc through ffmpeg takes no negative QP
    options = (
        cli_option("--preset", type=click.Choice(PRESETS), default=DEFAULT_PRESET, show_default=True,
                   help="VVenC preset, set up for features like VTM's low-delay cfg; vvenc-*: VVenC's presets untouched."),
    )

    def open_encoder(self, width: int, height: int, params: CodecParams, workdir: Path) -> FrameEncoder:
        self.check_size(width, height, params.sample_bits)
        if params.preset not in PRESETS:
            raise CodecError(f"vvenc: unknown preset '{params.preset}' (choose from {', '.join(PRESETS)})")
        self.check_qp(params.qp)
        if params.gop not in ("ld", "ra"):
            raise CodecError(f"vvenc: unknown GOP structure '{params.gop}'")
        settings = base_settings(params.intra_period)
        if params.gop == "ld":
            settings += ["GOPSize=8", "PicReordering=0", "DecodingRefreshType=none"]
        else:
            settings += ["DecodingRefreshType=cra"]
        vvenc_preset, extra = preset_settings(params.preset, params.gop)
        threads = params.threads or min(os.cpu_count() or 1, 8)
        return VVencSession(width, height, params.fps, params.qp, vvenc_preset, settings + extra, threads, workdir)

    def decode(
        self, payload: bytes, width: int, height: int, num_frames: int, workdir: Path, sample_bits: int = 10
    ) -> Iterator[np.ndarray]:
        self.check_size(width, height, sample_bits)
        stream = workdir / "decode.266"
        stream.write_bytes(payload)
        log = workdir / "vvdec.log"
        # one decoding thread: the output must not depend on how frame threads are scheduled
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-f", "vvc", "-i", str(stream),
               "-f", "rawvideo", "-pix_fmt", "gray10le", "pipe:1"]
        frame_bytes = width * height * 2
        produced = 0
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_fh)
            try:
                while True:
                    data = proc.stdout.read(frame_bytes)
                    if not data:
                        break
                    if len(data) != frame_bytes:
                        raise CodecError(
                            f"vvenc decoding gave a partial frame: the stream is not {width}x{height} 4:0:0 10-bit"
                        )
                    produced += 1
                    if produced > num_frames:
                        raise CodecError(f"the VVC stream holds more than the {num_frames} frames the header says")
                    yield np.frombuffer(data, dtype="<u2").reshape(height, width).astype(np.uint16)
                returncode = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
        if returncode != 0:
            raise command_failure("vvenc decoding", cmd, log.read_text(errors="replace"), returncode)
        if produced != num_frames:
            raise CodecError(f"the VVC stream decoded to {produced} frames, the header says {num_frames}")

    def describe(self) -> str:
        return f"vvenc (libvvenc via {Path(ffmpeg_exe()).name})"
