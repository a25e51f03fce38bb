"""Feature-coding methods: what is done to the split tensors before packing, and undone after.

- ``anchor``: the MPEG feature anchor, all channels of the three tensors as they are.
- ``advmsfc``: multi-scale feature fusion into one tensor, QP-adaptive channel truncation, and
  reconstruction of the three tensors at the decoder (see :mod:`fcm_common.coding.methods.advmsfc`).

The encoder and decoder only talk to a method through :class:`FeatureMethod` and the registry, so a
new method is one new module here: importing the package imports every module, which registers it.
"""

from __future__ import annotations

from fcm_common.coding.methods.base import (
    METHODS,
    FeatureMethod,
    check_method,
    method_for_decoding,
    method_for_encoding,
    prepare_method,
    register_method,
)
from fcm_common.coding.registry import import_modules

import_modules(__name__, __path__)

__all__ = [
    "METHODS", "FeatureMethod", "check_method", "method_for_decoding", "method_for_encoding", "prepare_method",
    "register_method",
]
