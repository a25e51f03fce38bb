import numpy as np
import pytest
import torch

from fcm_common.coding.quantization import (
    DATASET_RANGES,
    QuantizationError,
    RangeSpec,
    dequantize,
    float32_range,
    quantize,
    zero_level,
)


def test_formula_is_floor_of_the_clamped_normalised_value():
    lo, hi = DATASET_RANGES["tvd"]
    x = torch.tensor([-10.0, lo, 0.0, 1.0, 20.0, hi, 100.0])
    q = quantize(x, lo, hi)
    expected = np.floor(np.clip((x.numpy() - np.float32(lo)) / np.float32(hi - lo), 0, 1) * 1023)
    assert q.tolist() == expected.astype(int).tolist()
    assert q.tolist()[0] == 0 and q.tolist()[-1] == 1023


def test_round_trip_error_is_below_one_step(rng):
    lo, hi = DATASET_RANGES["hieve"]
    x = torch.from_numpy(rng.uniform(lo, hi, size=10000).astype(np.float32))
    back = dequantize(quantize(x, lo, hi), lo, hi)
    step = (hi - lo) / 1023
    err = (x - back).numpy()
    # floor: the reconstruction is at or below the value, by less than one step
    assert err.min() >= -1e-5 and err.max() < step + 1e-5
    assert err.mean() == pytest.approx(step / 2, rel=0.05)


def test_levels_survive_a_second_round_trip():
    q = torch.arange(1024, dtype=torch.int32)
    lo, hi = float32_range(-3.5, 7.25)
    assert torch.equal(quantize(dequantize(q, lo, hi) + 1e-4, lo, hi), q)


def test_range_specs():
    assert RangeSpec.parse("tvd") == RangeSpec("fixed", *DATASET_RANGES["tvd"], "tvd")
    assert RangeSpec.parse("HiEve").lo == -1.0795
    assert RangeSpec.parse("sequence").mode == "sequence"
    assert RangeSpec.parse("frame").mode == "frame"
    spec = RangeSpec.parse("-2,5.5")
    assert (spec.mode, spec.lo, spec.hi) == ("fixed", -2.0, 5.5)
    for bad in ("nope", "3,1", "1,1", "1,inf", "1"):
        with pytest.raises(QuantizationError):
            RangeSpec.parse(bad)


def test_zero_level_and_float32_range():
    assert zero_level(*DATASET_RANGES["tvd"]) == 91  # the framework's mid_level for TVD
    assert zero_level(*DATASET_RANGES["hieve"]) == 86
    lo, hi = float32_range(2.0, 2.0)  # a constant tensor still gets a usable range
    assert hi > lo == 2.0
    with pytest.raises(QuantizationError):
        quantize(torch.zeros(2), 1.0, 1.0)
