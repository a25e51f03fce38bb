"""Inner codecs: ``vvenc`` (default, from PyPI), ``vtm`` (reference software) and ``lossless``.

Every module of this package holds one codec class; importing the package imports them all, which
registers them (:func:`~fcm_common.coding.codecs.base.register_codec`). A new codec is a new module.
"""

from __future__ import annotations

from fcm_common.coding.codecs.base import (
    CODECS,
    NO_WORKER_THREADS,
    SHARED_OPTIONS,
    CodecChoice,
    CodecError,
    CodecParams,
    FrameDecoder,
    FrameEncoder,
    InnerCodec,
    check_decoded_frame,
    decoder_codec,
    make_codec,
    register_codec,
)
from fcm_common.coding.registry import import_modules

import_modules(__name__, __path__)

CODEC_NAMES = CODECS.names()
DECODER_CHOICES = ("auto", *sorted({cls.decoder for cls in CODECS if cls.decoder}))

__all__ = [
    "CODECS", "CODEC_NAMES", "DECODER_CHOICES", "NO_WORKER_THREADS", "SHARED_OPTIONS", "CodecChoice", "CodecError", "CodecParams",
    "FrameDecoder", "FrameEncoder", "InnerCodec", "check_decoded_frame", "decoder_codec", "make_codec", "register_codec",
]
