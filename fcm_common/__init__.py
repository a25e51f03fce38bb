"""Shared parts of fcm: the JDE network and its split points, pre/post-processing, the tracker and
MOT evaluation (and, beside them, feature packing, bitstream and inner codecs)."""

__version__ = "0.1.0"
