"""``lossless``: frames stored with zlib, for debugging and "uncompressed" reference points."""

from __future__ import annotations

import queue
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fcm_common.coding.codecs.base import (
    _END,
    CodecError,
    CodecParams,
    FrameDecoder,
    FrameEncoder,
    InnerCodec,
    check_frame,
    register_codec,
    sample_dtype,
)


class _ZlibEncoder(FrameEncoder):
    """One zlib stream; each frame is flushed (Z_SYNC_FLUSH) so that it can be sent on its own."""

    def __init__(self, width: int, height: int, sample_bits: int):
        self.width, self.height, self.sample_bits = width, height, sample_bits
        self.compressor = zlib.compressobj(level=6)
        self.out: queue.Queue = queue.Queue()  # (piece, pictures) ..., then None
        self.done = False

    def write(self, frame: np.ndarray) -> None:
        data = self.compressor.compress(check_frame(frame, self.width, self.height, self.sample_bits).tobytes())
        self.out.put((data + self.compressor.flush(zlib.Z_SYNC_FLUSH), 1))
        self.frames_written += 1

    def close(self) -> None:
        if not self.done:
            self.out.put((self.compressor.flush(), 0))
            self.out.put(None)
            self.done = True

    def pictures(self):
        while (item := self.out.get()) is not None:
            yield item

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.out.put(None)  # a reader of pictures() ends

    def finish(self) -> bytes:
        self.close()
        return b"".join(data for data, _ in self.pictures())


class _ZlibDecoder(FrameDecoder):
    """Inflates a segment as its pieces arrive, at most one frame at a time."""

    def __init__(self, width: int, height: int, sample_bits: int):
        super().__init__()
        self.dtype = sample_dtype(sample_bits)
        self.native = self.dtype.newbyteorder("=")
        self.width, self.height = width, height
        self.frame_bytes = width * height * self.dtype.itemsize
        self.decompressor = zlib.decompressobj()
        self.buffer = bytearray()
        self.produced = 0
        self.failed = False

    def _fail(self, message: str) -> None:
        if not self.failed:
            self.failed = True
            self._put(CodecError(message))

    def feed(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            pending = data
            while pending and not self.decompressor.eof:
                self.buffer += self.decompressor.decompress(pending, self.frame_bytes)
                pending = self.decompressor.unconsumed_tail
                self._give_out_frames()
            if pending or self.decompressor.unused_data:
                self._fail("lossless segment holds bytes after the end of its zlib stream")
        except zlib.error as exc:
            self._fail(f"lossless payload is damaged ({exc})")

    def _give_out_frames(self) -> None:
        while len(self.buffer) >= self.frame_bytes:
            chunk = bytes(self.buffer[: self.frame_bytes])
            del self.buffer[: self.frame_bytes]
            self.produced += 1
            self._put(np.frombuffer(chunk, dtype=self.dtype).reshape(self.height, self.width).astype(self.native))

    def end(self, num_frames: int | None = None) -> None:
        if self.failed:
            self._put(_END)
            return
        if not self.decompressor.eof:
            self._fail("lossless segment is truncated (its zlib stream does not end)")
        elif self.buffer:
            self._fail("lossless segment ends inside a frame")
        elif num_frames is not None and self.produced != num_frames:
            self._fail(f"lossless segment holds {self.produced} frames, its end unit says {num_frames}")
        self._put(_END)


@register_codec
class LosslessCodec(InnerCodec):
    name = "lossless"
    code = 0
    float_samples = True

    def held_pictures(self, gop: str) -> int | None:
        return 0  # each frame out as soon as it is compressed

    def open_encoder(self, width: int, height: int, params: CodecParams, workdir: Path) -> FrameEncoder:
        self.check_size(width, height, params.sample_bits)
        return _ZlibEncoder(width, height, params.sample_bits)

    def open_decoder(self, width: int, height: int, sample_bits: int, workdir: Path) -> FrameDecoder:
        self.check_size(width, height, sample_bits)
        return _ZlibDecoder(width, height, sample_bits)

    def decode(
        self, payload: bytes, width: int, height: int, num_frames: int, workdir: Path, sample_bits: int = 10
    ) -> Iterator[np.ndarray]:
        dtype = sample_dtype(sample_bits)
        native = dtype.newbyteorder("=")
        frame_bytes = width * height * dtype.itemsize
        decompressor = zlib.decompressobj()
        buffer = bytearray()
        produced = 0

        def drain():
            nonlocal produced
            while len(buffer) >= frame_bytes and produced < num_frames:
                chunk = bytes(buffer[:frame_bytes])
                del buffer[:frame_bytes]
                produced += 1
                yield np.frombuffer(chunk, dtype=dtype).reshape(height, width).astype(native)

        pending = payload
        try:
            while not decompressor.eof:
                # inflate at most one frame at a time: a damaged or hostile payload cannot balloon
                chunk = decompressor.decompress(pending, frame_bytes)
                pending = decompressor.unconsumed_tail
                buffer += chunk
                yield from drain()
                if produced == num_frames and buffer:
                    break  # more samples than announced: reported below
                if not chunk and not pending:
                    break
            buffer += decompressor.flush()
        except zlib.error as exc:
            raise CodecError(f"lossless payload is damaged ({exc})") from None
        yield from drain()
        if produced < num_frames:
            raise CodecError(f"lossless payload ends after {produced} of {num_frames} frames (truncated or damaged)")
        if buffer or decompressor.unused_data or (decompressor.eof and pending):
            raise CodecError(f"lossless payload holds more than the {num_frames} frames the header announces")
        if not decompressor.eof:
            raise CodecError("lossless payload is truncated (its zlib stream does not end)")
