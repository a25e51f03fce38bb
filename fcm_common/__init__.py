"""Shared parts of fcm, one folder per role; arrows only point down (checked by import-linter):

    cli         what commands share, and fcm-track / fcm-eval / fcm-bdrate / fcm-train / fcm-train-jde
    coding      feature methods, packing, quantisation, inner codecs, bitstream, rate
    msfc | tracking | evaluation | jde_training     (independent of each other)
    model       Darknet cfg, JDE and its split points, network inputs
    data        frame sources, MOT files, synthetic sequences
    core        errors, atomic files, resources, device, timing

The encoder (``fcm_encoder``) and decoder (``fcm_decoder``) sit above this package, and what drives
them (``fcm_ctc``) above those (``docs/architecture.md``; contracts in ``pyproject.toml``).
"""

__version__ = "0.1.0"
