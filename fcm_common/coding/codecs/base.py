"""The inner-codec interface and its registry: 10-bit monochrome frames in, bytes out, and back.

Frames are 2-D ``uint16`` arrays with values 0..1023, all of one size; the size is a multiple of 8
(the frame coder pads), so every codec can take it. Encoders are fed frame by frame (long
sequences never sit in memory as a whole); decoders yield frames one by one.

A codec is one class in one module of this package, decorated with :func:`register_codec`: its
name, its bitstream code and its command-line options come from the class. An option named like a
:class:`CodecParams` field (``--preset``) sets that stream parameter; the others (``--vtm-dir``)
build the codec instance (:meth:`InnerCodec.from_options`).
"""

from __future__ import annotations

import queue
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import click
import numpy as np

from fcm_common.coding.registry import CliOption, Registry, cli_option
from fcm_common.core.errors import FcmError

GOP_STRUCTURES = ("ld", "ra", "ll")


class CodecError(FcmError, RuntimeError):
    """An inner codec that is missing, refuses its input, or fails."""


# CodecParams.threads for an encoder fed at a source's pace: it waits most of the time, and workers
# that wait spin (see VVencCodec.open_encoder)
NO_WORKER_THREADS = -1


@dataclass(frozen=True)
class CodecParams:
    """Settings shared by the inner codecs (each takes what applies to it)."""

    qp: int
    fps: float
    intra_period: int = 32
    preset: str = "medium"  # VVenC preset
    gop: str = "ld"  # "ld" low delay (frames coded in display order), "ra" random access, "ll" low latency
    threads: int = 0  # 0: the codec's default; NO_WORKER_THREADS: none beside the one that codes
    sample_bits: int = 10  # 10: uint16 levels; 32: float32 samples (lossless codec only)


def command_failure(what: str, cmd: Sequence[str], output: str, returncode: int | None = None) -> CodecError:
    """A CodecError naming the binary, the command and the last lines it printed."""
    tail = [line.strip() for line in output.strip().splitlines() if line.strip()][-3:]
    status = f" (exit status {returncode})" if returncode is not None else ""
    return CodecError(
        f"{what} failed{status}: {' '.join(str(c) for c in cmd)} -- last output: {' | '.join(tail) or '(none)'}"
    )


def run_tool(what: str, cmd: Sequence[str], cwd: Path | None = None, log: Path | None = None) -> str:
    """Run a codec binary to completion; raise CodecError with its output on failure."""
    try:
        proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise CodecError(f"{what}: cannot run {cmd[0]} ({exc.strerror})") from None
    output = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(output)
    if proc.returncode != 0:
        raise command_failure(what, cmd, output, proc.returncode)
    return output


def sample_dtype(sample_bits: int) -> np.dtype:
    if sample_bits == 10:
        return np.dtype("<u2")
    if sample_bits == 32:
        return np.dtype("<f4")
    raise CodecError(f"unsupported sample format: {sample_bits} bits")


def check_frame(frame: np.ndarray, width: int, height: int, sample_bits: int = 10) -> np.ndarray:
    if frame.shape != (height, width):
        raise CodecError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the stream is {width}x{height}")
    dtype = sample_dtype(sample_bits)
    if frame.dtype.kind != dtype.kind or frame.dtype.itemsize != dtype.itemsize:
        raise CodecError(f"frames must be {dtype} samples, got {frame.dtype}")
    return np.ascontiguousarray(frame, dtype=dtype)


def check_decoded_frame(frame: np.ndarray, sample_bits: int, index: int) -> None:
    """Refuse a decoded frame whose samples no encoder can have produced: 10-bit levels above
    1023, or float32 samples that are not finite. A damaged payload (a lossless stream whose zlib
    blocks still inflate, a misbehaving VVC decoder) must stop here, before the samples reach the
    network, not after the tracker has choked on NaN features."""
    if sample_bits == 10:
        top = int(frame.max(initial=0))
        if top > 1023:
            raise CodecError(f"decoded frame {index} has sample value {top}, above the 10-bit maximum 1023 (damaged payload)")
    elif not np.isfinite(frame).all():
        raise CodecError(f"decoded frame {index} has samples that are not finite numbers (damaged payload)")


class FrameEncoder(ABC):
    """An encoding session: ``write`` frames, then ``finish`` for the payload.

    Streaming (one session per segment of a version-3 stream): ``write`` frames, ``close`` when the
    segment's last frame is written; meanwhile another thread iterates :meth:`pictures`, which yields
    the payload in the order the codec makes it, in pieces, each with the number of pictures it
    completes, as soon as the codec gives them out (VVenC: picture by picture; codecs that cannot
    give out pictures one by one yield everything after ``close``)."""

    # True when the payload was made in intra-period chunks joined afterwards (VTM + parcat)
    chunked: bool = False
    frames_written: int = 0

    @abstractmethod
    def write(self, frame: np.ndarray) -> None: ...

    @abstractmethod
    def finish(self) -> bytes: ...

    def abort(self) -> None:
        """Stop early and clean up (called on errors)."""

    def _writing_done(self) -> threading.Event:
        event = self.__dict__.get("_done_event")
        return event if event is not None else self.__dict__.setdefault("_done_event", threading.Event())

    def close(self) -> None:
        """No more frames (streaming): :meth:`pictures` ends once the rest is out."""
        self._writing_done().set()

    def pictures(self) -> Iterator[tuple[bytes, int]]:
        """(payload piece, pictures it completes), in order; by default all of it once :meth:`close` was
        called (another thread may still be writing frames until then)."""
        self._writing_done().wait()
        payload = self.finish()
        yield payload, self.frames_written


class FrameDecoder:
    """An incremental decoding session (one segment): :meth:`feed` payload pieces as they arrive,
    :meth:`end` when the segment's last one has come; :meth:`frames` (usually read by another thread)
    yields the decoded frames as they come out. At most ``maxsize`` frames wait to be read: a slow
    reader slows the feeder down instead of filling the memory."""

    def __init__(self, maxsize: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._aborted = threading.Event()

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def end(self, num_frames: int | None = None) -> None:
        """The segment is complete (``num_frames``: how many it holds, when known)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Stop: no frame is made any more; :meth:`frames` gives out those already decoded (the pictures
        before a damaged unit), then ends."""
        self._aborted.set()
        self._queue_put_nowait(_END)  # a full queue has no room: frames() ends on the flag once it is empty

    def frames(self) -> Iterator[np.ndarray]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._aborted.is_set():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # for subclasses
    def _put(self, item) -> bool:
        """Hand a frame (or an exception, or _END) to the reader; False once aborted."""
        while not self._aborted.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _queue_put_nowait(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            pass


_END = object()


class BufferedDecoder(FrameDecoder):
    """Decoding for codecs without an incremental decoder: the segment is kept until it ends, then
    decoded at once (:meth:`InnerCodec.decode`) in a thread of its own."""

    def __init__(self, codec: InnerCodec, width: int, height: int, sample_bits: int, workdir: Path):
        super().__init__()
        self.codec, self.width, self.height, self.sample_bits, self.workdir = codec, width, height, sample_bits, workdir
        self.buffer = bytearray()
        self.thread: threading.Thread | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def end(self, num_frames: int | None = None) -> None:
        if num_frames is None:
            raise CodecError(f"{self.codec.name}: a segment cut short cannot be decoded")

        def run():
            try:
                for frame in self.codec.decode(bytes(self.buffer), self.width, self.height, num_frames, self.workdir,
                                               self.sample_bits):
                    if not self._put(frame):
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the reader
                self._put(exc)
                return
            self._put(_END)

        self.thread = threading.Thread(target=run, daemon=True, name=f"{self.codec.name}-decode")
        self.thread.start()


class InnerCodec(ABC):
    """One inner codec; ``code`` identifies it in the bitstream."""

    name: ClassVar[str] = ""
    code: ClassVar[int] = -1
    options: ClassVar[tuple[CliOption, ...]] = ()  # encoder side (fcm-encode, fcm-ctc, fcm-calibrate)
    decode_options: ClassVar[tuple[CliOption, ...]] = ()  # fcm-decode
    float_samples: ClassVar[bool] = False  # can carry float32 samples (--bit-depth 32)
    family: ClassVar[str] = ""  # codecs of one family decode each other's streams ("vvc")
    decoder: ClassVar[str] = ""  # its name as fcm-decode --decoder, for a family's decoders

    max_size = 65535
    qp_range: ClassVar[tuple[int, int]] = (-12, 63)  # QPs the encoder takes (VVC, 10-bit: -12..63)
    # segments a stream may code at once (codecs that give out a segment only at its end, e.g. VTM's jobs)
    parallel_segments: int = 1

    def held_pictures(self, gop: str) -> int | None:
        """How many pictures the encoder holds before it gives one out, with GOP structure ``gop``, or
        None when it gives pictures out only in groups or at the segment's end (a live encoder keeps
        no more than these in the codec, so that frames wait where they can be skipped)."""
        return None

    def check_qp(self, qp: int) -> None:
        """Refuse a QP this codec cannot take (before any work is done)."""
        lo, hi = self.qp_range
        if not lo <= qp <= hi:
            raise CodecError(f"{self.name}: QP {qp} is outside {lo}..{hi}")

    @classmethod
    def from_options(cls, **options) -> InnerCodec:
        """The codec from its command-line options (each codec takes its own and ignores the rest)."""
        return cls()

    def check_size(self, width: int, height: int, sample_bits: int = 10) -> None:
        if width % 8 or height % 8 or width <= 0 or height <= 0:
            raise CodecError(f"{self.name}: frame size {width}x{height} is not a positive multiple of 8")
        if max(width, height) > self.max_size:
            raise CodecError(f"{self.name}: frame size {width}x{height} exceeds {self.max_size}")
        if sample_bits != 10 and not self.float_samples:
            raise CodecError(f"{self.name} codes 10-bit samples only; float32 samples need the lossless codec")

    @abstractmethod
    def open_encoder(self, width: int, height: int, params: CodecParams, workdir: Path) -> FrameEncoder: ...

    @abstractmethod
    def decode(
        self, payload: bytes, width: int, height: int, num_frames: int, workdir: Path, sample_bits: int = 10
    ) -> Iterator[np.ndarray]: ...

    def open_decoder(self, width: int, height: int, sample_bits: int, workdir: Path) -> FrameDecoder:
        """An incremental decoder for one segment (by default: decoded at once when it ends)."""
        self.check_size(width, height, sample_bits)
        return BufferedDecoder(self, width, height, sample_bits, workdir)

    def describe(self) -> str:
        return self.name


CODECS: Registry[InnerCodec] = Registry("codec", CodecError)
register_codec = CODECS.register

# options every codec command has (stream parameters of the VVC codecs)
SHARED_OPTIONS = (
    cli_option("--gop", type=click.Choice(GOP_STRUCTURES), default="ld", show_default=True,
               help="ld: low delay (VTM's GOP of 8: a picture waits for its GOP, up to 7 frames); ra: random access; "
                    "ll: low latency (a GOP of one picture, four references: no picture waits; for live streams)."),
)
PARAM_NAMES = frozenset(f.name for f in fields(CodecParams))


def make_codec(name: str, **options) -> InnerCodec:
    """An inner codec by name, from its options (e.g. ``vtm_dir``; those of other codecs are ignored)."""
    return CODECS[name].from_options(**options)


def decoder_codec(stream_codec: str, decoder: str = "auto", **options) -> InnerCodec:
    """The codec that decodes a stream of ``stream_codec``: itself, or (``decoder``, fcm-decode
    --decoder) another decoder of its family."""
    cls = CODECS[stream_codec]
    if decoder != "auto" and cls.family:
        cls = next((c for c in CODECS if c.decoder == decoder and c.family == cls.family), cls)
    return cls.from_options(**options)


@dataclass
class CodecChoice:
    """An inner codec as a command line chose it: its name and its options' values.

    The codec instance is built once, on first use (so that a command can check its other inputs
    first); ``params`` are the stream parameters among the options (gop, preset).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    _codec: InnerCodec | None = field(default=None, init=False, repr=False)

    @property
    def codec(self) -> InnerCodec:
        if self._codec is None:
            self._codec = make_codec(self.name, **self.build_options)
        return self._codec

    @property
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k in PARAM_NAMES}

    @property
    def build_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k not in PARAM_NAMES}
