"""Bitrate the MPEG way: the whole file (header included) over the sequence's duration."""

from __future__ import annotations


def kbps(total_bytes: int, num_frames: int, fps: float) -> float:
    """kbps = bytes * 8 * fps / (1000 * frames)."""
    if num_frames <= 0 or fps <= 0:
        raise ValueError("kbps needs a positive frame count and frame rate")
    return total_bytes * 8.0 * fps / (1000.0 * num_frames)


def effective_fps(fps: float, frames: int, skipped: int) -> float:
    """Frames coded (or decoded) per second of the source, when ``skipped`` of its frames were skipped."""
    return fps * frames / max(frames + skipped, 1)


def framework_anchor_bytes(payload_bytes: int, num_frames: int) -> int:
    """The size the MPEG framework counts for an anchor stream with this VVC payload: its own header
    of 13 bytes plus a float32 min and max per frame (13 + 8N), instead of fcm's header."""
    return payload_bytes + 13 + 8 * num_frames
