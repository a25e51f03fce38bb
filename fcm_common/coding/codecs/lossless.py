"""``lossless``: frames stored with zlib, for debugging and "uncompressed" reference points."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fcm_common.coding.codecs.base import (
    CodecError,
    CodecParams,
    FrameEncoder,
    InnerCodec,
    check_frame,
    register_codec,
    sample_dtype,
)


class _ZlibEncoder(FrameEncoder):
    def __init__(self, width: int, height: int, sample_bits: int):
        self.width, self.height, self.sample_bits = width, height, sample_bits
        self.compressor = zlib.compressobj(level=6)
        self.chunks: list[bytes] = []

    def write(self, frame: np.ndarray) -> None:
        self.chunks.append(self.compressor.compress(check_frame(frame, self.width, self.height, self.sample_bits).tobytes()))

    def finish(self) -> bytes:
        self.chunks.append(self.compressor.flush())
        return b"".join(self.chunks)


@register_codec
class LosslessCodec(InnerCodec):
    name = "lossless"
    code = 0
    float_samples = True

    def open_encoder(self, width: int, height: int, params: CodecParams, workdir: Path) -> FrameEncoder:
        self.check_size(width, height, params.sample_bits)
        return _ZlibEncoder(width, height, params.sample_bits)

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
