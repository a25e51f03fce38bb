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
import queue
import subprocess
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import click
import numpy as np

from fcm_common.coding.codecs.base import (
    _END,
    NO_WORKER_THREADS,
    CodecError,
    CodecParams,
    FrameDecoder,
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
# "ll": VVenC's GOP configuration made by hand (its automatic one knows one-picture GOPs only for all-intra
# coding): one B picture per GOP at QP + 1 (the offset of the key pictures of the low-delay GOP of 8),
# the four previous pictures as references. Every picture is coded as soon as it arrives, where the
# GOP of 8 makes a picture wait for its GOP's last one (up to 7 frame intervals of latency).
LOW_LATENCY_GOP = "Frame1=B 1 1 0.0 0.0 0 0 1.0 0 0 0 0 0 0 0 4 4 1 2 3 4 0 0"


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
    return preset, [*FEATURE_SETTINGS, *([LOW_DELAY_REFERENCES] if gop in ("ld", "ll") else [])]


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
        self.log = workdir / "vvenc.log"
        # ffmpeg writes each picture's size to one pipe (framecrc) and its bytes to another (not stdout:
        # libvvenc prints its messages there)
        sizes_r, sizes_w = os.pipe()
        data_r, data_w = os.pipe()
        self.cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s:v", f"{width}x{height}", "-r", _rate(fps),
            "-i", "pipe:0",
            "-c:v", "libvvenc", "-preset", vvenc_preset, "-qp", str(qp), "-qpa", "0",
            "-threads", str(threads), "-vvenc-params", ":".join([*settings, *TRANSPORT_SETTINGS]),
            "-map", "0:v", "-flush_packets", "1",
            # the size first: ffmpeg writes to the outputs in this order, and a picture larger than a pipe holds
            # would block it before its size line if the bytes came first
            "-f", "tee", f"[f=framecrc]pipe\\:{sizes_w}|[f=vvc]pipe\\:{data_w}",
        ]
        self.chroma = np.full(2 * (height // 2) * (width // 2), MID_CHROMA, dtype="<u2").tobytes()
        self.log_fh = open(self.log, "wb")
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=self.log_fh, stderr=self.log_fh,
                                         pass_fds=(sizes_w, data_w))
        except BaseException:
            os.close(sizes_r)
            os.close(data_r)
            raise
        finally:
            os.close(sizes_w)
            os.close(data_w)
        self.sizes = os.fdopen(sizes_r, "rb")
        self.data = os.fdopen(data_r, "rb")
        self.out: queue.Queue = queue.Queue()  # (picture bytes, 1), then None; or a CodecError
        # both pipes are drained all the time (ffmpeg must never block on one while we wait on the other)
        self.bytes = bytearray()
        self.bytes_done = False
        self.arrived = threading.Condition()
        self.drainer = threading.Thread(target=self._drain_bytes, daemon=True, name="vvenc-bytes")
        self.drainer.start()
        self.reader = threading.Thread(target=self._read_pictures, daemon=True, name="vvenc-output")
        self.reader.start()

    def _drain_bytes(self) -> None:
        try:
            while chunk := self.data.read1(1 << 16):
                with self.arrived:
                    self.bytes += chunk
                    self.arrived.notify_all()
        except (OSError, ValueError):
            pass
        with self.arrived:
            self.bytes_done = True
            self.arrived.notify_all()

    def _take(self, size: int) -> bytes:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bytes) >= size or self.bytes_done)
            data = bytes(self.bytes[:size])
            del self.bytes[:size]
            return data

    def _read_pictures(self) -> None:
        """One picture at a time, as ffmpeg muxes it: its size from framecrc, then its bytes."""
        try:
            for line in self.sizes:
                if line.startswith(b"#") or not line.strip():
                    continue
                size = int(line.split(b",")[4])
                data = self._take(size)
                if len(data) != size:
                    raise CodecError(f"vvenc: ffmpeg announced a {size}-byte picture and gave {len(data)} bytes")
                self.out.put((data, 1))
            self.drainer.join()
            if self.bytes:
                raise CodecError(f"vvenc: ffmpeg gave {len(self.bytes)} bytes outside its pictures: "
                                 f"{bytes(self.bytes[:40]).hex()}")
            self.out.put(None)
        except (CodecError, ValueError, IndexError, OSError) as exc:
            self.out.put(exc if isinstance(exc, CodecError) else CodecError(f"vvenc: cannot read ffmpeg's output ({exc})"))

    def _failure(self) -> CodecError:
        self.log_fh.close()
        log = self.log.read_text(errors="replace")
        failure = command_failure("vvenc encoding", self.cmd, log, self.proc.poll())
        if "Error submitting video frame to the encoder" in log:
            # ffmpeg's libvvenc wrapper gives each coded picture a buffer of width x height bytes: a picture
            # that needs more (a small frame of dense features at a low QP) stops the encoder, with no
            # message of libvvenc's own
            return CodecError(f"{failure} -- likely cause: a coded picture larger than {self.width}x{self.height} "
                              "bytes, the most ffmpeg's libvvenc can give out per picture (a low QP on a small "
                              "frame): use a higher QP or more channels")
        return failure

    def write(self, frame: np.ndarray) -> None:
        # One write per picture, luma and chroma together. Written in two, a process stopped between
        # them (Ctrl-C, SIGTERM, a kill) left ffmpeg a luma plane without its chroma: it logged "Invalid
        # buffer size, packet size 7168 < expected frame_size 10752" (a 64x56 picture) and still
        # finished the stream, exit status 0, into the temporary folder of a process that was gone.
        data = check_frame(frame, self.width, self.height).tobytes() + self.chroma
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.proc.wait()
            raise self._failure() from None
        self.frames_written += 1

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def pictures(self):
        """Each picture's bytes as ffmpeg gives them out (libvvenc gives a picture out when it has the
        next one, or at the end)."""
        produced = 0
        while True:
            item = self.out.get()
            if item is None:
                break
            if isinstance(item, CodecError):
                self.proc.wait()
                raise self._failure() if self.proc.returncode else item
            produced += 1
            yield item
        if self.proc.wait() != 0:
            raise self._failure()
        self.log_fh.close()
        self.sizes.close()
        self.data.close()
        if produced != self.frames_written:
            what = "an empty stream" if produced == 0 else "a short stream"
            raise CodecError(f"vvenc: libvvenc gave {produced} pictures for {self.frames_written} frames ({what} "
                             "although ffmpeg reported success)")

    def finish(self) -> bytes:
        self.close()
        payload = b"".join(data for data, _ in self.pictures())
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
        self.reader.join(timeout=5)
        self.drainer.join(timeout=5)
        self.log_fh.close()
        self.sizes.close()
        self.data.close()


@register_codec
class VVencCodec(InnerCodec):
    name = "vvenc"
    code = 1
    family = "vvc"
    decoder = "ffmpeg"

    def held_pictures(self, gop: str) -> int | None:
        return 1 if gop == "ll" else None  # ll: out when the next one comes; ld, ra: a GOP of pictures at once
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
        if params.gop not in ("ld", "ra", "ll"):
            raise CodecError(f"vvenc: unknown GOP structure '{params.gop}'")
        settings = base_settings(params.intra_period)
        if params.gop == "ld":
            settings += ["GOPSize=8", "PicReordering=0", "DecodingRefreshType=none"]
        elif params.gop == "ll":
            settings += ["GOPSize=1", "PicReordering=0", "DecodingRefreshType=none", LOW_LATENCY_GOP]
        else:
            settings += ["DecodingRefreshType=cra"]
        vvenc_preset, extra = preset_settings(params.preset, params.gop)
        if params.threads == NO_WORKER_THREADS:
            # libvvenc codes in ffmpeg's thread (Threads=0): a worker pool spins while it waits for the next
            # picture, and a paced source left it using a whole core between frames. The stream differs
            # slightly from a pool's (same decoder, a few bytes more or less)
            threads, extra = 1, [*extra, "Threads=0"]
        else:
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

    def open_decoder(self, width: int, height: int, sample_bits: int, workdir: Path) -> FrameDecoder:
        self.check_size(width, height, sample_bits)
        return VVCStreamDecoder(width, height, workdir)

    def describe(self) -> str:
        return f"vvenc (libvvenc via {Path(ffmpeg_exe()).name})"


# An access unit delimiter (VVC NAL type 20, layer 0, temporal id 0; no IRAP, any slice type). ffmpeg's
# VVC parser knows a picture has ended only when the next one begins: VVCStreamDecoder writes this
# delimiter right after each picture (and takes the picture's own leading delimiter away), so a
# picture is decoded when it arrives instead of when the next one does.
AUD = bytes.fromhex("0000000100a128")


def _leading_aud(picture: bytes) -> int:
    """Length of the access unit delimiter a picture starts with (0 if none)."""
    for code in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        n = len(code)
        if picture.startswith(code) and len(picture) >= n + 3 and (picture[n + 1] >> 3) == 20:
            return n + 3
    return 0


class VVCStreamDecoder(FrameDecoder):
    """ffmpeg's VVC decoder fed picture by picture (one segment): probing off, low delay, one thread.

    The output's ``-threads 1`` matters as much as the input's: ffmpeg's rawvideo encoder is frame
    threaded, and with its automatic thread count it held each decoded picture until the next one
    came (one frame interval of latency, measured: 101 ms at 10 fps; 1 ms with one thread)."""

    def __init__(self, width: int, height: int, workdir: Path):
        super().__init__()
        self.width, self.height = width, height
        self.frame_bytes = width * height * 2
        self.expected: int | None = None
        self.pictures = 0
        self.log = workdir / f"vvdec-{id(self)}.log"
        self.log_fh = open(self.log, "wb")
        self.cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-probesize", "32",
                    "-analyzeduration", "0", "-flags", "low_delay", "-threads", "1", "-f", "vvc", "-i", "pipe:0",
                    "-f", "rawvideo", "-pix_fmt", "gray10le", "-threads", "1", "-flush_packets", "1", "pipe:1"]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_fh)
        self.reader = threading.Thread(target=self._read, daemon=True, name="vvc-decode")
        self.reader.start()

    def feed(self, data: bytes) -> None:
        if self.pictures:
            data = data[_leading_aud(data):]
        self.pictures += 1
        try:
            self.proc.stdin.write(data + AUD)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # ffmpeg stopped: the reader reports why

    def end(self, num_frames: int | None = None) -> None:
        self.expected = num_frames
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def _read(self) -> None:
        produced = 0
        try:
            while True:
                data = self.proc.stdout.read(self.frame_bytes)
                if not data:
                    break
                if len(data) != self.frame_bytes:
                    raise CodecError(f"vvc decoding gave a partial frame: the stream is not {self.width}x{self.height} "
                                     "4:0:0 10-bit")
                produced += 1
                if not self._put(np.frombuffer(data, dtype="<u2").reshape(self.height, self.width).astype(np.uint16)):
                    return
            returncode = self.proc.wait()
            self.proc.stdout.close()
            self.log_fh.close()
            if returncode != 0 and not self._aborted.is_set():
                raise command_failure("vvc decoding", self.cmd, self.log.read_text(errors="replace"), returncode)
            if self.expected is not None and produced != self.expected:
                raise CodecError(f"the VVC segment decoded to {produced} frames, its end unit says {self.expected}")
            self._put(_END)
        except CodecError as exc:
            self._put(exc)

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        super().abort()
        self.proc.wait()
        self.reader.join(timeout=5)
        for fh in (self.proc.stdin, self.proc.stdout):
            try:
                fh.close()
            except OSError:
                pass
        self.log_fh.close()
