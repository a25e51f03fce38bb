"""The 16-byte identifiers of the bitstream header (JDE weights, learned model, reconstruction hash)."""

from __future__ import annotations

ID_BYTES = 16


def hex_id(value: str | bytes) -> bytes:
    """A 16-byte identifier from a hex digest (truncated) or bytes."""
    raw = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    return (raw + bytes(ID_BYTES))[:ID_BYTES]
