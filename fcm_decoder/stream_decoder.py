"""Decoding a version-3 stream as it arrives: units -> segments -> frames -> JDE part 2 -> tracks.

Two threads. The *feeder* reads byte pieces (a file, a pipe, a TCP listener), cuts them into units
(``coding.segments.UnitReader``, which resynchronises after damage), starts an inner decoder for
each segment header and feeds it each picture as it comes. The *consumer* (the calling thread)
takes the segments in order and each decoded frame as soon as the inner decoder gives it out: it
checks and hashes the frame, unpacks it, runs the method and JDE part 2 and the tracker, and hands
the frame's tracks to ``on_frame`` (``fcm-decode -o -`` prints them there and then).

A segment that is damaged (a unit with a bad CRC, bytes missing, a connection that broke, a decoder
error) loses its remaining frames; the next segment starts a new inner decoder, and the tracker is
told how many frames of the source went missing (:meth:`SequenceTracker.gap`), so that frame numbers
stay the source's. A segment whose reconstruction hash does not match keeps its tracks but is
reported. A decoder that joins a stream mid-way starts at the first segment header it finds.

One stream per session: the first segment accepted fixes the stream; a segment of another stream (a
different segment header, frame numbers already tracked, a segment index already seen) is refused.
With a key (``stream_key``), every unit's MAC is checked before its fields are parsed or its payload
reaches the inner decoder; a unit that fails is refused. A refusal ends what its connection sends
(a TCP listener's connection is closed, with one warning naming the peer and the reason; the listener
goes on); a listener's connection that does not begin with a segment header is not a stream and is
refused too. On a file or stdin a refusal before any segment was accepted is the error.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fcm_common.coding import bitstream, segments
from fcm_common.coding.codecs import CodecError, check_decoded_frame, decoder_codec
from fcm_common.coding.frame_coding import FrameFormat, frame_to_tensors
from fcm_common.coding.methods import FeatureMethod, method_for_decoding
from fcm_common.coding.rate import effective_fps, kbps
from fcm_common.coding.stream_key import UnitVerifier
from fcm_common.core.errors import FcmError
from fcm_common.core.timing import StageTimer
from fcm_common.model.preprocess import Letterbox
from fcm_common.streaming.transport import BREAK
from fcm_common.tracking.sequence import SequenceTracker
from fcm_decoder.checks import check_model, check_network

JOBS_WAITING = 4  # segments decoded ahead of the tracker (each holds an inner decoder)


@dataclass
class Loss:
    """Frames of the source that produced no tracks: ``first``..``last`` (1-based, inclusive; ``last``
    None: up to the end of the stream)."""

    first: int
    last: int | None
    why: str

    def describe(self) -> str:
        span = f"frame {self.first}" if self.last == self.first else (
            f"frames {self.first}..{self.last}" if self.last is not None else f"frames from {self.first} on")
        return f"{span} lost ({self.why})"


@dataclass
class StreamReport:
    tracker: SequenceTracker | None = None
    params: bitstream.StreamHeader | None = None
    method: FeatureMethod | None = None
    total_bytes: int = 0
    frames: int = 0
    skipped: int = 0  # frames the encoder skipped (it was behind a paced or live source): time without detections
    segments: int = 0
    first_frame: int | None = None  # 1-based number of the first frame tracked
    complete: bool = False  # the stream-end unit arrived
    announced_frames: int | None = None
    losses: list[Loss] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # segments whose reconstruction hash differs
    unverified: list[str] = field(default_factory=list)  # segments cut after their last frame: hash not checked
    refusals: list[str] = field(default_factory=list)  # connections (or the rest of an input) refused, and why
    latencies: list[float] = field(default_factory=list)  # seconds from capture to tracks, per frame
    seconds: dict[str, float] = field(default_factory=dict)
    features: list[list[np.ndarray]] = field(default_factory=list)

    @property
    def lost_frames(self) -> int:
        return sum((loss.last - loss.first + 1) for loss in self.losses if loss.last is not None)

    @property
    def kbps(self) -> float:
        return kbps(self.total_bytes, max(self.frames + self.skipped, 1), float(self.params.fps)) if self.params else 0.0

    @property
    def effective_fps(self) -> float:
        """Frames decoded per second of the source (its frame rate, less the frames the encoder skipped)."""
        return effective_fps(float(self.params.fps), self.frames, self.skipped) if self.params else 0.0

    @property
    def ok(self) -> bool:
        return not self.losses and not self.mismatches and not self.unverified

    def summary(self) -> str:
        """One line on what went wrong (empty when nothing did)."""
        parts = []
        if self.losses:
            lost = self.lost_frames
            parts.append(f"{len(self.losses)} loss{'es' if len(self.losses) > 1 else ''}"
                         + (f" ({lost} frames)" if lost else ""))
        if self.mismatches:
            parts.append(f"{len(self.mismatches)} segment(s) with a reconstruction hash mismatch")
        if self.unverified:
            parts.append(f"{len(self.unverified)} segment(s) not verified (their end unit was lost or wrong)")
        return "; ".join(parts)


class StreamRefused(FcmError):
    """A file's or stdin's stream refused before any segment of it was taken (a MAC that fails, a keyed
    stream without the key, an unkeyed one with a key)."""


@dataclass(frozen=True)
class _Refusal:
    """From the feeder to the consumer, in order with the segments: warn ``text``."""

    text: str


class _Job:
    """One segment on its way from the feeder to the consumer."""

    def __init__(self, header: segments.SegmentHeader, decoder):
        self.header, self.decoder = header, decoder
        self.records: list[segments.FrameRecord] = []
        self.done = threading.Event()
        self.frames: int | None = None
        self.recon_hash: bytes | None = None
        self.cut: str | None = None  # why the segment is incomplete

    def end(self, frames: int, recon_hash: bytes) -> None:
        self.frames, self.recon_hash = frames, recon_hash
        self.decoder.end(frames)
        self.done.set()

    def lose(self, why: str) -> None:
        if not self.done.is_set():
            self.cut = why
            self.decoder.abort()
            self.done.set()


class _Feeder(threading.Thread):
    def __init__(self, chunks: Iterable, decoder: str, workdir: Path, report: StreamReport, options: dict,
                 key: bytes | None = None):
        super().__init__(daemon=True, name="fcm-decode-feeder")
        self.chunks, self.decoder_name, self.workdir, self.report, self.options = chunks, decoder, workdir, report, options
        self.jobs: queue.Queue = queue.Queue(JOBS_WAITING)
        self.reader = segments.UnitReader()
        self.current: _Job | None = None
        self.codecs: dict[str, object] = {}
        self.stopping = threading.Event()
        self.verifier = UnitVerifier(key) if key is not None else None
        self.connections = hasattr(chunks, "drop_connection")  # a listener: each connection refused on its own
        self.session: segments.SegmentHeader | None = None  # the first segment accepted: this session's stream
        self.last: _Job | None = None  # the last segment accepted
        self.unit_number = 0  # keyed: the number the current segment's next unit carries in its MAC
        self.refused = False  # the rest of this connection (or of the input) is ignored
        self.fresh = True  # nothing of this connection read yet
        self.connection_bytes = 0
        self.connection_taken = False  # a segment of this connection was accepted

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                if self.stopping.is_set():
                    break
                if chunk is BREAK:
                    self._events(self.reader.reset(), broke=True)
                    self.refused, self.fresh, self.connection_bytes, self.connection_taken = False, True, 0, False
                    continue
                self.report.total_bytes += len(chunk)
                self.connection_bytes += len(chunk)
                self._events(self.reader.feed(chunk))
                if self.report.complete or (self.refused and not self.connections):
                    break
            if not self.refused:
                self._events(self.reader.end())
            if self.current is not None:
                self.current.lose("the stream ended inside the segment")
                self.current = None
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer
            if self.current is not None:
                self.current.lose("decoding stopped")
            self._put(exc)
        finally:
            stop = getattr(self.chunks, "stop", None)
            if stop is not None:
                stop()

    def _put(self, item) -> None:
        while True:
            try:
                self.jobs.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stopping.is_set():
                    return

    def _events(self, events, broke: bool = False) -> None:
        for event in events:
            if self.refused:
                return  # the rest of a refused connection goes nowhere
            if isinstance(event, segments.Damage):
                if self.connections and self.fresh and event.size:
                    self._refuse(f"not an fcm stream ({event.why} where it begins)")
                elif self.current is not None:
                    self.current.lose("the connection broke" if broke else f"damaged: {event.why}")
                    self.current = None
                continue
            if self.connections and self.fresh and event.kind != segments.SEGMENT:
                self._refuse("not an fcm stream (it does not begin with a segment header)")
                continue
            self.fresh = False
            self._unit(event)
        if broke and self.current is not None:
            self.current.lose("the connection broke")
            self.current = None

    def _refuse(self, reason: str) -> None:
        """Nothing more from this connection (or input): a listener closes it and says so once."""
        self.refused = True
        if self.current is not None:
            self.current.lose(f"refused: {reason}")
            self.current = None
        if self.connections:
            if not self.connection_taken:  # nothing of it was taken: its bytes are not the stream's
                self.report.total_bytes -= self.connection_bytes
            text = f"connection from {self.chunks.peer} refused: {reason}"
            self.chunks.drop_connection()
        elif self.session is None:
            raise StreamRefused(reason)
        else:
            text = f"the rest of the input is refused: {reason}"
        self.report.refusals.append(text)
        self._put(_Refusal(text))

    def _authentic(self, unit: segments.Unit) -> bytes | None:
        """The unit's body as its parser takes it (a keyed unit's MAC checked and removed), or None:
        the unit goes nowhere (and the connection may be refused)."""
        keyed = unit.kind == segments.SEGMENT and segments.is_keyed_segment(unit.body)
        if self.verifier is None:
            if keyed:
                self._refuse("the stream is keyed (its units carry a MAC): give the decoder the encoder's key "
                             "(--key-file)")
                return None
            return unit.body
        if unit.kind == segments.SEGMENT:
            if not keyed:
                self._refuse("the stream is not keyed (its units carry no MAC), and this decoder takes only "
                             "streams made with its key")
                return None
            body = self.verifier.open_segment(unit.body)
        elif unit.kind == segments.STREAM_END:
            if self.session is None:
                return None  # no stream to end
            body = self.verifier.open_stream_end(unit.body, self.session.stream_id)
        else:
            job = self.current
            if job is None:
                return None  # its segment is lost: it goes nowhere
            body = self.verifier.open(unit.kind, unit.body, job.header.stream_id, job.header.index, self.unit_number)
            self.unit_number += 1
        if body is None:
            self._refuse("a unit failed its MAC check (the key is not the encoder's, or the unit was forged, "
                         "replayed or moved)")
        return body

    def _other_stream(self, header: segments.SegmentHeader) -> str | None:
        """Why a segment is not of this session's stream (None: it is)."""
        first, last = self.session, self.last
        if first is None:
            return None
        if header.stream_id != first.stream_id:
            return "another stream (its stream identity is not the one this decoder is tracking)"
        if header.body[16:] != first.body[16:]:  # all but the segment's index, first frame and time
            return "another stream (its segment header differs from the stream this decoder is tracking)"
        if header.stream_id is not None and header.index <= last.header.index:  # a keyed stream never repeats one
            return f"segment {header.index} again (segment {last.header.index} was taken already): a replay"
        tracked = last.header.first_frame + len(last.records)
        if header.first_frame < tracked or header.index <= last.header.index:
            return (f"another stream (it starts at frame {header.first_frame + 1}; frames up to {tracked} are "
                    "tracked already)")
        return None

    def _unit(self, unit: segments.Unit) -> None:
        body = self._authentic(unit)
        if body is None:
            return
        unit = segments.Unit(unit.kind, body, unit.offset)
        if unit.kind == segments.SEGMENT:
            try:
                header = segments.parse_segment(unit.body)
            except FcmError:
                if self.current is not None:
                    self.current.lose("its header is invalid")
                    self.current = None
                return
            why = self._other_stream(header)
            if why is not None:
                self._refuse(why)
                return
            if self.current is not None:
                self.current.lose("the next segment began before its end")
            p = header.params
            codec = self.codecs.get(p.codec)
            if codec is None:
                codec = self.codecs[p.codec] = decoder_codec(p.codec, self.decoder_name, **self.options)
            job = _Job(header, codec.open_decoder(p.coded_width, p.coded_height, p.sample_bits, self.workdir))
            self.current = self.last = job
            self.session = self.session or header
            self.unit_number = 1
            self.connection_taken = True
            self._put(job)
        elif unit.kind == segments.PICTURE:
            job = self.current
            if job is None:
                return  # no header yet (joining mid-stream) or a segment already lost
            try:
                picture = segments.parse_picture(unit.body, job.header)
            except FcmError as exc:
                job.lose(str(exc))
                self.current = None
                return
            job.records.extend(picture.records)  # before the payload: the consumer reads them per frame
            job.decoder.feed(picture.payload)
        elif unit.kind == segments.SEGMENT_END:
            job = self.current
            try:
                index, frames, digest = segments.parse_segment_end(unit.body)
            except FcmError as exc:
                if job is not None:
                    job.lose(str(exc))
                    self.current = None
                return
            if job is None or index != job.header.index:
                return
            if frames != len(job.records):
                job.lose(f"its end unit says {frames} frames, its pictures carried {len(job.records)}")
            else:
                job.end(frames, digest)
            self.current = None
        elif unit.kind == segments.STREAM_END:
            try:
                frames, _ = segments.parse_stream_end(unit.body)
            except FcmError:
                return  # not a stream end this decoder can take: the stream goes on
            self.report.announced_frames = frames
            self.report.complete = True


def decode_units(
    chunks: Iterable,
    model,
    device: torch.device,
    method: FeatureMethod | None = None,
    model_path: str | None = None,
    decoder: str = "auto",
    vtm_dir: str | None = None,
    buffer_mode: str = "framework",
    keep_features: bool = False,
    on_frame: Callable[[list, int, float | None], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_start: Callable[[bitstream.StreamHeader, FeatureMethod], None] | None = None,
    check_params: Callable[[bitstream.StreamHeader], None] | None = None,
    stream_key: bytes | None = None,
    on_status: Callable[[StreamReport], None] | None = None,
    **options,
) -> StreamReport:
    """Decode and track a version-3 stream given as byte pieces (see the module docstring).

    ``stream_key``: the encoder's key; only units whose MAC it makes are taken (None: only unkeyed
    streams). ``on_frame(rows, frame_number, latency)`` is called after each frame (its tracks, its 1-based
    number in the source, seconds since its capture or None); ``on_warning(text)`` for each loss and refusal;
    ``on_start(params, method)`` once the first segment is set up (the network checked);
    ``check_params(params)`` first, with the first segment's parameters (a command's own checks);
    ``on_status(report)`` after each frame (its counts so far: frames, frames the encoder skipped).
    """
    report = StreamReport()
    warn = on_warning or (lambda text: None)
    timer = StageTimer(device)
    codec_options = {"vtm_dir": vtm_dir, **options}
    pending_loss: tuple[int, str] | None = None  # (first lost frame, why): closed by the next segment
    expected: int | None = None  # 0-based index of the next frame of the source

    def unverified(pending) -> None:
        """A segment damaged after its last frame arrived: nothing lost, but nothing verified either."""
        if pending:
            text = f"{pending[1]}, after its frames arrived: they are tracked but not verified"
            report.unverified.append(text)
            warn(text)

    def lose(first: int, last: int | None, why: str) -> None:
        loss = segments_loss = Loss(first + 1, None if last is None else last + 1, why)
        report.losses.append(segments_loss)
        warn(loss.describe())

    with tempfile.TemporaryDirectory(prefix="fcm-dec-") as tmp, torch.inference_mode():
        feeder = _Feeder(chunks, decoder, Path(tmp), report, codec_options, stream_key)
        feeder.start()
        try:
            while True:
                job = feeder.jobs.get()
                if job is None:
                    break
                if isinstance(job, BaseException):
                    raise job
                if isinstance(job, _Refusal):
                    warn(job.text)
                    continue
                header, p = job.header, job.header.params
                if report.params is None:
                    if check_params:
                        check_params(p)
                    check_network(p, model)
                    method = method or method_for_decoding(p.method, device, model_path=model_path,
                                                           model_id=p.model_id, **codec_options)
                    check_model(p, method, model)
                    report.params, report.method = p, method
                    report.tracker = SequenceTracker(float(p.fps), buffer_mode)
                    report.tracker.frame_number = header.first_frame + 1
                    report.first_frame = header.first_frame + 1
                    if on_start:
                        on_start(p, method)
                tracker = report.tracker
                if expected is not None and header.first_frame > expected:  # never before it: the feeder refuses that
                    why = pending_loss[1] if pending_loss else "segments missing"
                    lose(expected, header.first_frame - 1, why)
                    tracker.gap(header.first_frame - expected, model.embedding_dim)
                elif pending_loss:
                    unverified(pending_loss)
                pending_loss = None
                report.segments += 1
                fmt = FrameFormat(p.layout, p.coded_width, p.coded_height, p.sample_bits, p.fill_level)
                box = Letterbox(p.orig_width, p.orig_height, p.input_width, p.input_height)
                digest = segments.segment_hash(header)
                index = 0
                position = header.first_frame  # 0-based, in the source: frames skipped by the encoder count
                damaged = None
                frames = job.decoder.frames()
                try:
                    while True:
                        with timer.stage("receive_decode"):  # waits for the stream too
                            frame = next(frames, None)
                        if frame is None:
                            break
                        record = job.records[index]
                        if record.skipped:  # the encoder skipped these frames of the source: time passes
                            tracker.skip(record.skipped)
                            report.skipped += record.skipped
                            position += record.skipped
                        check_decoded_frame(frame, p.sample_bits, position)
                        segments.hash_range(digest, record)
                        bitstream.hash_frame(digest, frame)
                        lo_hi = record.range if p.per_frame_range else p.ranges[0]
                        with timer.stage("unpack_dequantise"):
                            coded = [t[None] for t in frame_to_tensors(frame, fmt, *lo_hi, device=device)]
                        with timer.stage("nn_part2"):
                            features = method.restore(coded, p.fused_channels)
                            rows = model.forward_part2(features, p.split)
                        if not bool(torch.isfinite(rows).all()):
                            raise FcmError(f"frame {position + 1}: the network output is not "
                                           "finite (the segment's quantisation ranges or its payload are damaged)")
                        if keep_features:
                            report.features.append([f[0].float().cpu().numpy() for f in features])
                        with timer.stage("tracking"):
                            tracker.push(rows[0], box)
                        latency = time.time() - record.capture_time if record.capture_time > 0 else None
                        if latency is not None:
                            report.latencies.append(latency)
                        report.frames += 1
                        index += 1
                        position += 1
                        if on_frame:
                            on_frame(tracker.last_rows, tracker.frame_number - 1, latency)
                        if on_status:
                            on_status(report)
                except CodecError as exc:
                    damaged = str(exc)
                    job.lose(damaged)
                job.done.wait()
                expected = position
                if damaged or job.cut:
                    pending_loss = (expected, f"segment {header.index}: {damaged or job.cut}")
                elif bitstream.digest16(digest) != job.recon_hash:
                    text = (f"segment {header.index} (frames {header.first_frame + 1}..{expected}): reconstruction "
                            "hash mismatch: its tracks may be wrong (damaged payload or a non-conforming decoder)")
                    report.mismatches.append(text)
                    warn(text)
        finally:
            feeder.stopping.set()
            # a consumer that stops early (an error, Ctrl-C) stops the inner decoders first
            while True:
                try:
                    job = feeder.jobs.get_nowait()
                except queue.Empty:
                    break
                if isinstance(job, _Job):
                    job.lose("decoding stopped")
            if feeder.current is not None:
                feeder.current.lose("decoding stopped")
            feeder.join(timeout=5)
    if pending_loss is not None:
        first, why = pending_loss
        last = report.announced_frames - 1 if report.announced_frames else None
        if last is None or last >= first:
            lose(first, last, why)
        else:
            unverified(pending_loss)
    if report.params is None:
        refused = f" ({len(report.refusals)} connection(s) refused, see the warnings above)" if report.refusals else ""
        raise FcmError(f"no segment of an fcm stream was found in the input{refused}")
    if not report.complete and not report.losses:
        lose(expected or 0, None, "the stream ended without its end unit: cut short")
    report.seconds = dict(timer.seconds)
    return report


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p95, max) of latencies in seconds."""
    if not values:
        return (float("nan"),) * 3
    ordered = np.sort(np.asarray(values))
    return float(np.percentile(ordered, 50)), float(np.percentile(ordered, 95)), float(ordered[-1])
