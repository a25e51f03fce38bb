"""The fcm encoder: frames -> JDE part 1 -> method -> 10-bit frames -> inner codec -> bitstream.

:func:`encode_stream` plans the frame format once (layout, coded size, quantisation range, fill
level), then codes the frames segment by segment (docs/bitstream.md, version 3): each segment its
own inner-codec session, its pictures sent as the codec gives them out, its end unit carrying the
reconstruction hash (the segment decoded as a decoder will, while it is coded), so that a damaged
payload, a re-signed range or a non-conforming decoder cannot go unnoticed. A stored file and a live
stream are made by this one function; :func:`encode_sequence` keeps the stream in memory.

Frames stream through: nothing holds the whole sequence's features (a TVD/DN53 frame is 18.5 MB
of floats). The one exception is ``--range sequence``, which needs the feature range before the
first frame is quantised and therefore runs NN part 1 twice (a first pass only measures it).
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from fcm_common.coding import bitstream, segments, stream_key
from fcm_common.coding.codecs import NO_WORKER_THREADS, CodecParams, InnerCodec, check_decoded_frame, make_codec
from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.packing import FrameLayout
from fcm_common.coding.quantization import RangeSpec, float32_range, value_range, zero_level
from fcm_common.coding.rate import effective_fps, kbps
from fcm_common.coding.segments import FrameRecord
from fcm_common.core.errors import FcmError
from fcm_common.core.timing import StageTimer
from fcm_common.data.sources import FrameSource, SourceError
from fcm_common.model.onnx_part1 import part1_runner
from fcm_common.model.preprocess import batched, network_inputs, preprocess
from fcm_common.model.splits import SplitPoint, get_split
from fcm_encoder.live import LiveFrames, SkipPolicy

MID_LEVEL = 512  # fill level of per-frame ranges, which have no single zero level: unused tiles are mid-grey


@dataclass
class EncodeSettings:
    """How to encode. ``split`` and ``codec`` may be given by name (resolved here, once)."""

    split: SplitPoint
    qp: int = 32
    codec: InnerCodec = "vvenc"
    intra_period: int = 32
    preset: str = "medium"
    gop: str = "ld"
    range_spec: RangeSpec = field(default_factory=lambda: RangeSpec.parse("frame"))
    sample_bits: int = 10
    batch_size: int = 1
    threads: int = 0
    segment: int | None = None  # frames per segment (at most the intra period); None: the intra period
    stream_key: bytes | None = field(default=None, repr=False)  # a keyed stream: every unit carries a MAC
    # a paced or live source: frames are skipped to keep this bound (seconds); 0: never. fcm-encode's default is
    # DEFAULT_MAX_LATENCY; the library's is 0, as before skipping existed
    max_latency: float = 0.0
    engine: str = "torch"  # NN part 1: torch, onnxruntime, or auto (onnxruntime for a paced or live source on a CPU)

    def __post_init__(self) -> None:
        self.split = get_split(self.split)
        if isinstance(self.codec, str):
            self.codec = make_codec(self.codec)
        self.codec.check_qp(self.qp)

    @property
    def segment_length(self) -> int:
        """Frames per segment: each segment is coded on its own, starting with an intra picture."""
        return min(self.segment or self.intra_period, self.intra_period)

    def codec_params(self, fps: float) -> CodecParams:
        return CodecParams(
            qp=self.qp, fps=fps, intra_period=self.segment_length, preset=self.preset, gop=self.gop,
            threads=self.threads, sample_bits=self.sample_bits,
        )


@dataclass
class EncodeReport:
    frames: int
    fps: float
    total_bytes: int
    header_bytes: int
    coded_width: int
    coded_height: int
    coded_channels: list[int]
    ranges: list[tuple[float, float]]
    seconds: dict[str, float]
    chunked: bool = False
    segments: int = 0
    sink: object | None = None  # the StreamSink written to (its drop count, for live outputs)
    skipped: int = 0  # frames of a paced or live source skipped because the encoder was behind
    engine: str = "torch"  # what ran NN part 1

    @property
    def source_frames(self) -> int:
        """Frames of the source the stream covers: those coded and those skipped between them."""
        return self.frames + self.skipped

    @property
    def effective_fps(self) -> float:
        """Frames coded per second of the source."""
        return effective_fps(self.fps, self.frames, self.skipped)

    @property
    def kbps(self) -> float:
        return kbps(self.total_bytes, self.source_frames, self.fps)


ProgressFn = Callable[[str, int, int], None]  # (stage description, done increment, total)


@dataclass(frozen=True)
class FramePlan:
    """The frame format of a stream, fixed before the first frame is coded."""

    split_shapes: list[tuple[int, int, int]]
    coded_shapes: list[tuple[int, int, int]]
    layout: FrameLayout
    format: FrameFormat
    fixed_range: tuple[float, float] | None  # None: one range per frame

    @property
    def width(self) -> int:
        return self.format.coded_width

    @property
    def height(self) -> int:
        return self.format.coded_height


class _Pass:
    """One pass of NN part 1 and the method over the source, batch by batch. ``stamps`` receives, in
    order, each frame's position in the source and its capture time as the frame enters NN part 1."""

    def __init__(self, source: FrameSource, model, method: FeatureMethod, settings: EncodeSettings, device, timer: StageTimer,
                 live: LiveFrames | None = None, part1: Callable | None = None):
        self.source, self.model, self.method, self.settings, self.device, self.timer = source, model, method, settings, device, timer
        self.live = live  # a paced or live source whose frames may be skipped
        self.part1 = part1 or (lambda x: model.forward_part1(x, settings.split))
        self.stamps: collections.deque[tuple[int, float]] = collections.deque()

    def _inputs(self):
        """(batch, letterbox geometries, stamps)."""
        model, size = self.model, self.settings.batch_size
        if self.live is not None:  # frames read and skipped in LiveFrames' thread, letterboxed here (skipped: never)
            for frames in batched(self.live, size):
                pairs = [preprocess(f.load(), model.input_width, model.input_height) for f in frames]
                yield torch.stack([p[0] for p in pairs]), [p[1] for p in pairs], [(f.index, f.capture_time) for f in frames]
            return
        # frames read and letterboxed one batch ahead in a thread of their own (image decoding and resizing
        # overlap the network); their capture times are appended to the source's as they are read
        times = self.source.capture_times
        count = 0
        for batch, boxes in _read_ahead(network_inputs(self.source, model.input_width, model.input_height, size)):
            stamps = [(count + b, times.popleft() if times else time.time()) for b in range(len(boxes))]
            count += len(boxes)
            yield batch, boxes, stamps

    def __iter__(self):
        """(coded tensors of a batch (B, k, H, W) each, their letterbox geometry)."""
        self.source.capture_times.clear()
        self.stamps.clear()
        for batch, boxes, stamps in self._inputs():
            self.stamps.extend(stamps)
            with self.timer.stage("nn_part1"):
                feats = self.part1(batch.to(self.device))
                coded = self.method.reduce(feats)
            yield coded, boxes


def _read_ahead(items, depth: int = 2):
    """``items`` produced by a thread, at most ``depth`` ahead; its exceptions are raised here."""
    out: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(end)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer
            out.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="fcm-read-ahead")
    thread.start()
    try:
        while (item := out.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
        close = getattr(items, "close", None)
        if close is not None and not thread.is_alive():
            close()


def warm_up(model, method: FeatureMethod, settings: EncodeSettings, device: torch.device, part1: Callable | None = None) -> None:
    """NN part 1 and the method once on a blank input (a live source's first frames then run at speed)."""
    blank = torch.zeros(settings.batch_size, 3, model.input_height, model.input_width, device=device)
    with torch.inference_mode():
        method.reduce(part1(blank) if part1 else model.forward_part1(blank, settings.split))


def choose_part1(model, settings: EncodeSettings, device: torch.device, paced: bool) -> tuple[str, Callable | None]:
    """(engine name, NN part 1 as ``x -> split tensors``, None: the model's torch forward_part1).

    ``auto`` runs part 1 on onnxruntime for a paced or live source on a CPU (about 2.4 times faster
    than torch eager at one thread, features within 1.2e-5: docs/live.md) and on torch otherwise, so
    that a stored stream is the same bytes as before and as ``fcm-track``'s network computes."""
    engine = settings.engine
    if engine == "auto":
        engine = "onnxruntime" if paced and device.type == "cpu" else "torch"
        if engine == "onnxruntime":
            run = part1_runner(model, settings.split, torch.get_num_threads())
            return ("onnxruntime", run) if run is not None else ("torch", None)
    if engine == "onnxruntime":
        if device.type != "cpu":
            raise FcmError("--engine onnxruntime runs NN part 1 on the CPU: use --device cpu")
        run = part1_runner(model, settings.split, torch.get_num_threads())
        if run is None:
            raise FcmError("--engine onnxruntime: onnxruntime is not installed (pip install onnxruntime)")
        return "onnxruntime", run
    if engine != "torch":
        raise FcmError(f"unknown NN part 1 engine '{engine}' (auto, torch or onnxruntime)")
    return "torch", None


def measure_range(reduced: _Pass, progress: ProgressFn | None = None) -> tuple[float, float]:
    """Min and max of the coded tensors over the whole sequence (first pass of ``--range sequence``)."""
    lo, hi = float("inf"), float("-inf")
    with torch.inference_mode():
        for coded, boxes in reduced:
            batch_lo, batch_hi = value_range(coded)
            lo, hi = min(lo, batch_lo), max(hi, batch_hi)
            if progress:
                progress("measuring range", len(boxes), reduced.source.length)
    return lo, hi


# ------------------------------------------------------------------------------------ the steps
def plan_frames(reduced: _Pass, progress: ProgressFn | None = None) -> FramePlan:
    """Step 1: the frame layout and coded size, the quantisation range and the fill level."""
    settings, method = reduced.settings, reduced.method
    split_shapes = reduced.model.split_shapes(settings.split)
    coded_shapes = method.coded_shapes(split_shapes)
    layout = method.layout(coded_shapes)
    width, height = padded_size(layout)
    spec = settings.range_spec
    if settings.sample_bits == 32:
        if not settings.codec.float_samples:
            raise FcmError("float32 samples (--bit-depth 32) can only be carried by the lossless codec")
        fixed_range: tuple[float, float] | None = (0.0, 1.0)  # unused: samples are not quantised
        fill = 0
    else:
        if spec.mode == "fixed":
            fixed_range = float32_range(spec.lo, spec.hi)
        elif spec.mode == "sequence":
            fixed_range = float32_range(*measure_range(reduced, progress))
        else:
            fixed_range = None  # per frame
        fill = zero_level(*fixed_range) if fixed_range is not None else MID_LEVEL
    fmt = FrameFormat(layout, width, height, settings.sample_bits, fill)
    return FramePlan(split_shapes, coded_shapes, layout, fmt, fixed_range)


def packed_frames(reduced: _Pass, plan: FramePlan, progress: ProgressFn | None = None):
    """The 10-bit frames the inner encoder is fed, one by one, with the range each was quantised
    with. Public so that a codec comparison (``make bench-codec``) codes exactly these frames."""
    source, timer = reduced.source, reduced.timer
    with torch.inference_mode():
        for coded, boxes in reduced:  # one frame size per sequence: FrameSource.frames checks it
            for b in range(len(boxes)):
                tensors = [t[b] for t in coded]
                with timer.stage("quantise_pack"):
                    lo_hi = plan.fixed_range or float32_range(*value_range(tensors))
                    frame = tensors_to_frame(tensors, plan.format, *lo_hi)
                yield frame, lo_hi
            if progress:
                progress("encoding", len(boxes), source.length)


def sequence_frames(source: FrameSource, model, method: FeatureMethod, settings: EncodeSettings, device: torch.device,
                    progress: ProgressFn | None = None):
    """(frame plan, the packed frames with their ranges) of a source, as :func:`encode_sequence`
    would code them; nothing is encoded."""
    reduced = _Pass(source, model, method, settings, device, StageTimer(device))
    plan = plan_frames(reduced, progress)
    return plan, packed_frames(reduced, plan, progress)


def encode_sequence(
    source: FrameSource,
    model,
    method: FeatureMethod,
    settings: EncodeSettings,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> tuple[bytes, EncodeReport]:
    """Encode a frame source; returns the complete stream (version 3, as stored) and a report."""
    from fcm_common.streaming.transport import BytesSink

    sink = BytesSink()
    report = encode_stream(source, model, method, settings, device, sink, progress)
    return sink.getvalue(), report


StatusFn = Callable[[LiveFrames], None]  # called after each frame of a paced or live source


def encode_stream(
    source: FrameSource,
    model,
    method: FeatureMethod,
    settings: EncodeSettings,
    device: torch.device,
    sink,
    progress: ProgressFn | None = None,
    on_status: StatusFn | None = None,
) -> EncodeReport:
    """Encode a frame source into ``sink`` (a :class:`~fcm_common.streaming.transport.StreamSink`), unit
    by unit, as the frames come: the file ``fcm-encode`` writes and a live stream are made here, alike.

    Two threads: this one reads frames, runs NN part 1 and the method, quantises and packs each frame
    and writes it to the segment's inner encoder (which codes in a process of its own, so that the
    network works on frame n+1 while the codec codes frame n); a collector thread takes each picture
    the codec gives out and sends it as a picture unit, then closes each segment with its end unit
    (the reconstruction hash: the segment decoded once more, as a decoder will).

    A paced or live source (``source.live`` or ``source.realtime``) is read through
    :class:`~fcm_encoder.live.LiveFrames`: when the encoder falls behind, whole frames are skipped
    before NN part 1 (``settings.max_latency``; 0: never), and the stream says how many before each
    coded frame. ``on_status(live)`` is called after each of its frames (counts for a status line)."""
    paced = sink.live or source.live or source.realtime
    timed = source.live or source.realtime  # frames come at the source's pace: they may be skipped
    engine, part1 = choose_part1(model, settings, device, timed)
    if settings.threads == 0 and paced:
        # frames come at the source's pace: the codec waits most of the time, and a waiting worker pool
        # spins (a core lost to the network and the decoder beside it); one thread codes a picture in time
        settings = dataclasses.replace(settings, threads=NO_WORKER_THREADS)
    timer = StageTimer(device)
    live = None
    if timed and settings.max_latency > 0:
        live = LiveFrames(source, SkipPolicy(settings.max_latency, 1.0 / source.fps))
    reduced = _Pass(source, model, method, settings, device, timer, live, part1)
    plan = plan_frames(reduced, progress)
    frames_done = 0
    next_index = 0  # the source position after the last frame coded
    held = settings.codec.held_pictures(settings.gop)  # pictures the codec holds (None: it gives out groups)
    with tempfile.TemporaryDirectory(prefix="fcm-enc-") as tmp:
        collector = _Collector(settings, plan, sink, Path(tmp), timer, live.policy if live else None)
        collector.start()
        if paced:
            # before the first frame is read: the first segment's codec starts while the network runs once
            # on a blank picture (its first run is the slowest), so the first frames are not late
            collector.prepare_next(source)
            warm_up(model, method, settings, device, part1)
        segment = None
        source_error = None
        try:
            frames = packed_frames(reduced, plan, progress)
            while True:
                try:
                    item = next(frames, None)
                except SourceError as exc:
                    if not sink.live:
                        raise
                    # a live source that breaks (stdin cut inside a frame): the frames read are sent as a
                    # complete stream, then the error is reported
                    source_error = exc
                    item = None
                if item is None:
                    break
                frame, lo_hi = item
                index, capture = reduced.stamps.popleft()
                if segment is None or segment.frames == settings.segment_length:
                    if segment is not None:
                        segment.close()
                    # a segment starts where the last one ended: frames skipped in between are its first frame's
                    segment = collector.open_segment(source, model, method, settings, plan, next_index, capture,
                                                     skips=live is not None)
                skipped = index - next_index if live is not None else None
                if live is not None and held is not None:
                    # frames wait here, where they can be skipped, not inside the codec (a codec starting up or
                    # slower than the source would otherwise hold a growing backlog no skip can reach)
                    collector.wait_given_out(frames_done - max(held, 1))
                segment.write(frame, FrameRecord(capture, lo_hi if plan.fixed_range is None else None, skipped), timer)
                frames_done += 1
                next_index = index + 1
                if on_status is not None and live is not None:
                    on_status(live)
                if segment.frames == settings.segment_length - 1 and settings.segment_length > 1:
                    collector.prepare_next(source)
                collector.check()
            if segment is not None:
                segment.close()
            collector.finish(next_index)
        except BaseException:
            collector.abort()
            raise
    if source_error is not None:
        raise source_error
    if frames_done == 0:
        raise FcmError(f"{source.path}: no frames to encode")
    return EncodeReport(
        frames=frames_done,
        fps=float(Fraction(source.fps).limit_denominator(1001)),
        total_bytes=collector.total_bytes,
        header_bytes=collector.total_bytes - collector.payload_bytes,
        coded_width=plan.width,
        coded_height=plan.height,
        coded_channels=[k for k, _, _ in plan.coded_shapes],
        ranges=collector.ranges if plan.fixed_range is None else [plan.fixed_range],
        seconds=dict(timer.seconds),
        segments=collector.segments,
        sink=sink,
        skipped=next_index - frames_done,
        engine=engine,
    )


class _Segment:
    """One segment being coded: its header, its inner encoder, the records of the frames written."""

    def __init__(self, header: segments.SegmentHeader, encoder, collector: _Collector):
        self.header, self.encoder, self.collector = header, encoder, collector
        self.records: list[FrameRecord] = []
        self.written: list[float] = []  # when each frame was given to the codec
        self.frames = 0
        self.closed = False

    def write(self, frame, record: FrameRecord, timer: StageTimer) -> None:
        self.records.append(record)  # before the frame: the collector reads it when the picture comes out
        self.written.append(time.time())
        with timer.stage("encode"):
            self.encoder.write(frame)
        self.frames += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.encoder.close()


class _ReconstructionCheck:
    """A segment's reconstruction hash, made while the segment is coded: the decoder a receiver runs
    (the codec's incremental one) is fed each picture as the codec gives it out, and a thread hashes
    each frame it decodes, so that the segment's end unit is ready when its last picture is. (Decoding
    the whole segment at its end held the next segment's first pictures back: a latency peak at every
    segment start of a live stream.)"""

    def __init__(self, codec: InnerCodec, header: segments.SegmentHeader, records: list[FrameRecord], workdir: Path):
        p = header.params
        self.header, self.records, self.sample_bits = header, records, p.sample_bits
        self.digest = segments.segment_hash(header)
        self.decoded = 0
        self.error: BaseException | None = None
        self.decoder = codec.open_decoder(p.coded_width, p.coded_height, p.sample_bits, workdir)
        self.thread = threading.Thread(target=self._hash, daemon=True, name="fcm-encode-check")
        self.thread.start()

    def _hash(self) -> None:
        try:
            for frame in self.decoder.frames():
                check_decoded_frame(frame, self.sample_bits, self.header.first_frame + self.decoded)
                segments.hash_range(self.digest, self.records[self.decoded])  # written before its frame was coded
                bitstream.hash_frame(self.digest, frame)
                self.decoded += 1
        except BaseException as exc:  # noqa: BLE001 - raised by finish
            self.error = exc

    def feed(self, data: bytes) -> None:
        if data:
            self.decoder.feed(data)

    def finish(self, frames: int) -> bytes:
        """The hash, once the decoder has given out the segment's ``frames`` frames."""
        self.decoder.end(frames)
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.decoded != frames:
            raise FcmError(f"segment {self.header.index}: its {frames} coded frames decoded to {self.decoded}")
        return bitstream.digest16(self.digest)

    def abort(self) -> None:
        self.decoder.abort()
        self.thread.join(timeout=5)


class _Aborted(Exception):
    """The encoding stopped: the collector sends nothing more."""


class _Collector(threading.Thread):
    """Sends each segment's units in order: its header, its pictures as the codec gives them out, its
    end with the reconstruction hash; the stream end after the last one."""

    def __init__(self, settings: EncodeSettings, plan: FramePlan, sink, workdir: Path, timer: StageTimer,
                 policy: SkipPolicy | None = None):
        super().__init__(daemon=True, name="fcm-encode-collector")
        self.settings, self.plan, self.sink, self.workdir, self.timer = settings, plan, sink, workdir, timer
        self.policy = policy  # told how long each frame took from the codec's input to its picture unit sent
        self.jobs: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.total_bytes = self.payload_bytes = 0
        self.segments = 0
        self.ranges: list[tuple[float, float]] = []
        self.open: list[_Segment] = []
        self.spare = None  # the next segment's encoder, started ahead (its start-up overlaps this segment)
        self.aborted = False
        self.units = stream_key.UnitWriter(settings.stream_key)  # with a key: each unit sealed with its MAC
        self.given_out = 0  # frames the codecs gave out (as pictures), all segments together
        self.progress = threading.Condition()

        self.folders = 0

    def _open_encoder(self, source):
        """A segment's encoding session, in a folder of its own (sessions overlap: the next one is
        started ahead, and VTM codes several segments at once with --vtm-jobs)."""
        folder = self.workdir / f"segment-{self.folders}"
        self.folders += 1
        folder.mkdir()
        return self.settings.codec.open_encoder(self.plan.width, self.plan.height,
                                                self.settings.codec_params(source.fps), folder)

    def prepare_next(self, source) -> None:
        if self.spare is None:
            self.spare = self._open_encoder(source)

    def open_segment(self, source, model, method, settings, plan, first_frame: int, base_time: float,
                     skips: bool = False) -> _Segment:
        params = bitstream.StreamHeader(
            method=method.name, split=settings.split.name, codec=settings.codec.name, sample_bits=settings.sample_bits,
            qp=settings.qp, gop=settings.gop, intra_period=settings.segment_length, orig_width=source.width,
            orig_height=source.height, input_width=model.input_width, input_height=model.input_height, num_frames=1,
            fps=Fraction(source.fps).limit_denominator(1001), coded_width=plan.width, coded_height=plan.height,
            fused_channels=tuple(method.fused_channels(plan.split_shapes)), layout=plan.layout,
            ranges=[] if plan.fixed_range is None else [plan.fixed_range], fill_level=plan.format.fill_level,
            jde_id=bitstream.hex_id(model.weights_id), model_id=method.model_id,
            per_frame_range=plan.fixed_range is None,
        )
        timestamps = self.sink.live or source.live or source.realtime  # a stored sequence: no times (same bytes every run)
        header = segments.SegmentHeader(self.segments, first_frame, params, base_time if timestamps else 0.0,
                                        timestamps=timestamps, stream_id=self.units.stream_id, skips=skips)
        self.segments += 1
        encoder, self.spare = self.spare, None
        if encoder is None:
            encoder = self._open_encoder(source)
        segment = _Segment(header, encoder, self)
        self.open.append(segment)
        self.jobs.put(segment)
        return segment

    def _send(self, data: bytes, payload: int = 0, segment_start: bool = False, frames: int = 0) -> None:
        if self.aborted:
            raise _Aborted()
        self.sink.write(data, segment_start=segment_start, frames=frames)
        self.total_bytes += len(data)
        self.payload_bytes += payload

    def run(self) -> None:
        workers = max(1, int(self.settings.codec.parallel_segments))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="fcm-segment") if workers > 1 else None
        pending: collections.deque = collections.deque()  # (segment, its pictures being coded), in order
        try:
            while True:
                job = self.jobs.get()
                if job is None or isinstance(job, int):
                    while pending:
                        self._segment(*self._take(pending))
                    if isinstance(job, int):
                        self._send(self.units.stream_end(job, self.segments))
                    return
                if pool is None:
                    self._segment(job, job.encoder.pictures())
                    continue
                pending.append((job, pool.submit(lambda j=job: list(j.encoder.pictures()))))
                while len(pending) > workers or (pending and pending[0][1].done()):
                    self._segment(*self._take(pending))
        except _Aborted:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the encoding thread
            self.error = exc
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _take(pending):
        segment, future = pending.popleft()
        return segment, future.result()

    def _segment(self, segment: _Segment, pictures) -> None:
        header = segment.header
        self._send(self.units.segment(header), segment_start=True)
        check = _ReconstructionCheck(self.settings.codec, header, segment.records, self.workdir)
        try:
            held, taken, sent = bytearray(), 0, 0  # held: a file's segment payload, sent as one unit
            for data, count in pictures:
                taken += count
                with self.progress:
                    self.given_out += count
                    self.progress.notify_all()
                check.feed(data)
                if self.sink.live:  # each picture as soon as it is coded; a file gets one unit per segment
                    self._picture(header, segment.records[sent:taken], data)
                    self._sent(segment.written[sent:taken])
                    sent = taken
                else:
                    held += data
            if not self.sink.live or sent < taken or not taken:
                self._picture(header, segment.records[sent:taken], bytes(held))
                if self.sink.live:
                    self._sent(segment.written[sent:taken])
            with self.timer.stage("reconstruction_hash"):  # what is left of it: the last picture's
                recon_hash = check.finish(taken)
        except BaseException:
            check.abort()
            raise
        self._send(self.units.segment_end(header, taken, recon_hash))
        self.open.remove(segment)

    def _sent(self, written: list[float]) -> None:
        if self.policy is not None:
            now = time.time()
            for t in written:
                self.policy.sent(now - t)

    def _picture(self, header, records, data: bytes) -> None:
        if header.per_frame_range:
            self.ranges.extend(r.range for r in records)
        self._send(self.units.picture(header, records, data), payload=len(data), frames=len(records))

    def wait_given_out(self, frames: int) -> None:
        """Wait until the codecs have given out ``frames`` frames (or the collector failed)."""
        with self.progress:
            while self.given_out < frames and self.error is None and self.is_alive():
                self.progress.wait(0.1)
        self.check()

    def check(self) -> None:
        """Raise the collector's error in the encoding thread."""
        if self.error is not None:
            raise self.error

    def finish(self, frames: int) -> None:
        if self.spare is not None:  # started for a segment that never came
            self.spare.abort()
            self.spare = None
        self.jobs.put(frames)
        while self.is_alive():
            self.join(timeout=0.1)
        self.check()

    def abort(self) -> None:
        self.aborted = True  # nothing more is sent
        for segment in list(self.open):
            segment.encoder.abort()
        if self.spare is not None:
            self.spare.abort()
        self.jobs.put(None)
        self.join(timeout=10)
