"""NN part 1 of a JDE run by onnxruntime: the cheaper path of a live encoder on a CPU (issue 29).

JDE's part 1 is a plain graph of Darknet layers (convolution, batch norm, leaky ReLU, shortcut,
route, nearest upsampling), so it is written here directly as an ONNX model (the protobuf wire
format, a few message types), without torch's exporter (which needs the ``onnx`` package and
traces the network): the graph is the network's own, layer by layer, with its weights. onnxruntime
then folds batch norm into the convolutions and fuses the activations. On the 2-core development
CPU, one thread, batch 1, the bundled JDE's backbone part 1 runs about 2.4 times faster than torch
eager, with features within 1.2e-5 (3e-7 of the largest value) of torch's (``make bench-part1``,
docs/live.md).

:func:`part1_runner` returns a callable ``x -> list of split tensors`` or None when onnxruntime is
not installed (the encoder then runs torch).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from fcm_common.core.varint import varint

IMAGE_INPUT = "image"
OPSET = 17
IR_VERSION = 8


# ------------------------------------------------------------------- protobuf wire format
def _int(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return varint(field << 3 | 2) + varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<f", value)


# ONNX messages (onnx.proto field numbers)
_FLOAT = 1  # TensorProto.DataType and AttributeProto FLOAT
_ATTR_INT, _ATTR_STRING, _ATTR_INTS = 2, 3, 7


def _attribute(name: str, value) -> bytes:
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, _FLOAT)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, _ATTR_STRING)
    return _bytes(1, name) + b"".join(_int(8, int(v)) for v in value) + _int(20, _ATTR_INTS)


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs) -> bytes:
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    body += _bytes(3, name) + _bytes(4, op)
    body += b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
    return body


def _tensor(name: str, array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype="<f4")
    return b"".join(_int(1, d) for d in array.shape) + _int(2, _FLOAT) + _bytes(8, name) + _bytes(9, array.tobytes())


def _value_info(name: str, dims: Sequence[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


# ------------------------------------------------------------------------- the JDE graph
def part1_onnx(model, split) -> bytes:
    """NN part 1 of ``model`` (a :class:`~fcm_common.model.jde.JDE`) for ``split`` as an ONNX model:
    input ``image`` (N, 3, H, W), outputs the split tensors in split-layer order."""
    layers = model.part1_layers(split)
    outputs = list(model._split_layers(split))
    nodes, weights = [], []
    names = {-1: IMAGE_INPUT}  # layer -> the name of its output

    def weight(name: str, tensor: torch.Tensor) -> str:
        weights.append(_tensor(name, tensor.detach().float().cpu().numpy()))
        return name

    for i in layers:
        kind, inputs = model.layer_types[i], [names[j] for j in model.layer_inputs[i]]
        out = f"l{i}"
        if kind == "convolutional":
            x = inputs[0]
            for module in model.module_list[i]:
                step = f"{out}.{len(nodes)}"
                if isinstance(module, nn.Conv2d):
                    args = [x, weight(f"{step}.w", module.weight)]
                    if module.bias is not None:
                        args.append(weight(f"{step}.b", module.bias))
                    k, s, p = module.kernel_size, module.stride, module.padding
                    nodes.append(_node("Conv", args, [step], step, kernel_shape=list(k), strides=list(s),
                                       pads=[p[0], p[1], p[0], p[1]], group=module.groups))
                elif isinstance(module, nn.BatchNorm2d):
                    args = [x, weight(f"{step}.g", module.weight), weight(f"{step}.b", module.bias),
                            weight(f"{step}.m", module.running_mean), weight(f"{step}.v", module.running_var)]
                    nodes.append(_node("BatchNormalization", args, [step], step, epsilon=float(module.eps)))
                elif isinstance(module, nn.LeakyReLU):
                    nodes.append(_node("LeakyRelu", [x], [step], step, alpha=float(module.negative_slope)))
                else:  # pragma: no cover - JDE builds no other module in a convolutional layer
                    raise ValueError(f"layer {i}: no ONNX form for {type(module).__name__}")
                x = step
            names[i] = x
        elif kind == "shortcut":
            nodes.append(_node("Add", inputs, [out], out))
            names[i] = out
        elif kind == "route":
            if len(inputs) == 1:
                names[i] = inputs[0]
            else:
                nodes.append(_node("Concat", inputs, [out], out, axis=1))
                names[i] = out
        elif kind == "upsample":
            factor = float(model.layer_strides[model.layer_inputs[i][0]] // model.layer_strides[i])
            scales = weight(f"{out}.scales", torch.tensor([1.0, 1.0, factor, factor]))
            nodes.append(_node("Resize", [inputs[0], "", scales], [out], out, mode="nearest",
                               coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
            names[i] = out
        else:  # pragma: no cover - part 1 never reaches a prediction layer
            raise ValueError(f"layer {i}: no ONNX form for a {kind} layer")
    graph_outputs = []
    for n, i in enumerate(outputs):
        name = f"split{n}"
        nodes.append(_node("Identity", [names[i]], [name], name))
        graph_outputs.append(_value_info(name, ["N", model.layer_channels[i], "H", "W"]))
    graph = b"".join(_bytes(1, node) for node in nodes) + _bytes(2, "jde_part1")
    graph += b"".join(_bytes(5, w) for w in weights)
    graph += _bytes(11, _value_info(IMAGE_INPUT, ["N", model.cfg.channels, "H", "W"]))
    graph += b"".join(_bytes(12, o) for o in graph_outputs)
    return _int(1, IR_VERSION) + _bytes(2, "fcm") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, OPSET))


def part1_runner(model, split, threads: int) -> Callable[[torch.Tensor], list[torch.Tensor]] | None:
    """NN part 1 of ``model`` for ``split`` on onnxruntime's CPU provider with ``threads`` threads, as
    ``x (N, 3, H, W) float32 -> list of split tensors``; None when onnxruntime is not installed."""
    # onnxruntime's telemetry writes a session file (.ses) into $TMPDIR when it is imported: not from fcm
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(part1_onnx(model, split), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        model._check_input(x)
        arrays = session.run(None, {IMAGE_INPUT: x.detach().cpu().float().contiguous().numpy()})
        return [torch.from_numpy(a) for a in arrays]

    return run
