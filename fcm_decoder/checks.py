"""What a decoder checks before it decodes: that the JDE and the learned model given are the ones the
stream was made with.

Both decoders run these checks (``decoder`` for a stored stream, ``stream_decoder`` per segment of a
live one), so they live below both; ``decoder`` hands version-3 streams to ``stream_decoder``.
"""

from __future__ import annotations

from fcm_common.coding.identifiers import hex_id
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.stream_header import StreamHeader
from fcm_common.core.errors import FcmError


def check_network(header: StreamHeader, model) -> None:
    """The JDE given must be the encoder's: same weights, same input size."""
    if hex_id(model.weights_id) != header.jde_id:
        raise FcmError(
            f"the bitstream was encoded with JDE weights {header.jde_id.hex()}, these weights are "
            f"{hex_id(model.weights_id).hex()}: pass the same --weights as the encoder"
        )
    if (model.input_width, model.input_height) != (header.input_width, header.input_height):
        raise FcmError(
            f"the bitstream was made for a {header.input_width}x{header.input_height} network input, "
            f"this JDE takes {model.input_width}x{model.input_height}"
        )


def check_model(header: StreamHeader, method: FeatureMethod, model) -> None:
    """The learned model given must be the one the stream names, and the stream's tensors must be
    what this network (and model) make."""
    if method.model_id != header.model_id:
        raise FcmError(
            f"the bitstream names model {header.model_id.hex()}, the model given is {method.model_id.hex()}"
        )
    grids = [(g.height, g.width) for _, g in sorted(zip(header.layout.source_index, header.layout.grids))]
    method.check_stream(header.fused_channels, model.split_shapes(header.split), grids)
