"""The vision network: Darknet cfg parsing, JDE built from a cfg and cut at the MPEG split points,
and the letterboxed network inputs (pre-processing and batching)."""
