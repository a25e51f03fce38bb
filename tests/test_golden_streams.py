"""Bitstreams and tracks recorded before a refactoring must stay byte for byte what they were.

A fixed synthetic sequence (``conftest.small_sequence``, on which the random network tracks two
walkers) is encoded with the random-weight 320x192 JDE (anchor and advmsfc, lossless and vvenc) and
decoded; the sha256 of every stream, of every decoded tracks file (never empty: the recording holds
its row count) and of the detections is compared with ``tests/data/golden_streams.json``.

The network's float results depend on the CPU's kernels and on the number of threads, so the test
runs torch on one thread and the recording carries a *platform* fingerprint made without fcm's code:
torch's version, its CPU capability and a digest of plain torch kernels (convolutions, batch norm,
upsampling) on seeded inputs. On another platform the streams are still decoded and their tracks
checked, but byte equality is skipped; on the recording's platform any change is a failure, whatever
part of fcm (source reading, letterbox, network, packing, codec, tracker) it comes from. Re-record
(only after an intended change, saying why) with ``FCM_RECORD_GOLDEN=1 pytest tests/test_golden_streams.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from fcm_common.coding import bitstream
from fcm_common.coding.methods.advmsfc import AdvMSFCMethod
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec
from fcm_common.data.mot_format import format_rows
from fcm_common.data.sources import open_source
from fcm_common.msfc.checkpoint import MSFCCheckpoint
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, scale_order
from fcm_common.msfc.qact import load_qact
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

GOLDEN = Path(__file__).parent / "data" / "golden_streams.json"
CPU = torch.device("cpu")
RECORD = os.environ.get("FCM_RECORD_GOLDEN") == "1"

CASES = {
    "anchor-lossless-dn53": ("anchor", "lossless", "dn53", 32, "frame"),
    "anchor-vvenc-alt1": ("anchor", "vvenc", "alt1", 32, "hieve"),
    "advmsfc-lossless-backbone": ("advmsfc", "lossless", "backbone", 32, None),
    "advmsfc-vvenc-backbone": ("advmsfc", "vvenc", "backbone", 37, None),
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def platform_fingerprint() -> str:
    """What the recorded floats depend on, computed by torch alone (no fcm code, so that a regression
    in fcm cannot turn the comparison into a skip): torch's version, the CPU capability its kernels
    use, and the bytes of a few kernels JDE is made of, on seeded inputs, on one thread."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(1, 3, 64, 96, generator=gen)
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.inference_mode():
        for c_in, c_out, k, stride in [(3, 32, 3, 1), (32, 64, 3, 2), (64, 32, 1, 1), (32, 64, 3, 1), (64, 128, 3, 2)]:
            w = torch.randn(c_out, c_in, k, k, generator=gen) * (2 / (c_in * k * k)) ** 0.5
            x = F.conv2d(x, w, stride=stride, padding=k // 2)
            x = F.batch_norm(x, torch.randn(c_out, generator=gen), torch.rand(c_out, generator=gen) + 0.5,
                             torch.rand(c_out, generator=gen), torch.randn(c_out, generator=gen))
            x = F.leaky_relu(x, 0.1)
            out.append(x)
        out.append(F.interpolate(x, scale_factor=2, mode="nearest"))
        out.append(torch.softmax(x.flatten(1), dim=1))
    torch.set_num_threads(threads)
    kernels = _sha(b"".join(t.numpy().tobytes() for t in out))[:16]
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, kernels {kernels}"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: a convolution's sums are split between threads, and so are its roundings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_advmsfc(jde) -> AdvMSFCMethod:
    """A seeded, untrained backbone model: enough to pin the advmsfc stream format."""
    shapes = jde.split_shapes("backbone")
    order = scale_order("backbone")
    arch = MSFCArch(tuple(shapes[i][0] for i in order), 536, (16, 32), (8, 16, 32))
    torch.manual_seed(7)
    model = AdvMSFC(arch, order).eval().requires_grad_(False)
    ckpt = MSFCCheckpoint("backbone", model, jde.weights_id, load_qact("backbone"), code_range=(-4.0, 4.0))
    return AdvMSFCMethod(ckpt, ckpt.qact.channels_for(37))


@pytest.fixture(scope="module")
def recorded():
    if RECORD:
        return {"platform": platform_fingerprint(), "cases": {}}
    return json.loads(GOLDEN.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_stream_and_tracks_match_the_recording(small_jde, small_sequence, recorded, case):
    method_name, codec, split, qp, rng = CASES[case]
    method = AnchorMethod() if method_name == "anchor" else _tiny_advmsfc(small_jde)
    spec = RangeSpec.parse(rng) if rng else RangeSpec("fixed", -4.0, 4.0, "model")
    settings = EncodeSettings(split=split, qp=qp, codec=codec, preset="faster", range_spec=spec, threads=1)
    data, _ = encode_sequence(open_source(small_sequence), small_jde, method, settings, CPU)
    header, payload = bitstream.parse(data)
    tracker = decode_stream(header, payload, len(data), small_jde, CPU, method=method).tracker
    detections = b"".join(d.tobytes() for d in tracker.frame_detections)
    got = {"stream": _sha(data), "bytes": len(data), "tracks": _sha(format_rows(tracker.rows).encode()),
           "rows": len(tracker.rows), "detections": _sha(detections)}
    assert tracker.rows, "the recording pins tracks, not an empty file"
    if RECORD:
        recorded["cases"][case] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
        return
    platform = platform_fingerprint()
    if platform != recorded["platform"]:
        pytest.skip(f"recorded on {recorded['platform']}, this is {platform}: byte equality not comparable here")
    assert got == recorded["cases"][case]
