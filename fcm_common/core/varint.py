"""LEB128 variable-length integers: 7 bits a byte, low bits first (fcm's stream units and ONNX's
protobuf wire format both write them)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """``value`` as a varint; a negative one as its 64-bit two's complement, as protobuf writes it."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
