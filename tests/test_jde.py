import math

import pytest
import torch

from fcm_common.model.jde import JDE, WeightsError, YOLODecode, load_jde
from fcm_common.model.splits import SPLITS, SplitError, get_split

EXPECTED_SHAPES = {
    "dn53": [(256, 76, 136), (512, 38, 68), (1024, 19, 34)],
    "alt1": [(512, 19, 34), (256, 38, 68), (128, 76, 136)],
    "backbone": [(536, 19, 34), (536, 38, 68), (536, 76, 136)],
}


def test_module_and_parameter_names_follow_the_official_checkpoint(jde):
    keys = list(jde.state_dict())
    conv_w = [k for k in keys if k.endswith(".weight") and ".conv_" in k]
    conv_b = [k for k in keys if k.endswith(".bias") and ".conv_" in k]
    bn = [k for k in keys if ".batch_norm_" in k and k.endswith("running_var")]
    assert len(conv_w) == 78 and len(conv_b) == 6 and len(bn) == 72
    assert keys[0] == "module_list.0.conv_0.weight"
    assert "module_list.113.conv_113.bias" in keys
    assert "module_list.110.batch_norm_110.running_mean" in keys
    # conv weights 65,610,592 + BN affine 52,608 + conv biases 1,608 (the official count without
    # the identity classifier and the nine uncertainty scalars)
    assert sum(p.numel() for p in jde.parameters()) == 65_664_808
    assert len(jde.module_list) == 116


@pytest.mark.slow
@pytest.mark.parametrize("split", list(SPLITS))
def test_split_shapes_part1_and_part2_equal_the_full_forward(jde, full_input, full_output, split):
    with torch.inference_mode():
        feats = jde.forward_part1(full_input, split)
        assert [tuple(f.shape[1:]) for f in feats] == EXPECTED_SHAPES[split]
        assert jde.split_shapes(split) == EXPECTED_SHAPES[split]
        out = jde.forward_part2([f.clone() for f in feats], split)
    assert out.shape == (1, 54264, 518)
    assert torch.equal(out, full_output)


def test_part2_reads_only_the_split_tensors(jde):
    # part 2 is computed from the graph between the split tensors and the prediction layers
    assert jde.part2_layers("dn53") == list(range(75, 116))
    assert jde.part2_layers("backbone") == [85, 100, 115]
    alt1 = jde.part2_layers("alt1")
    assert alt1 == list(range(76, 86)) + list(range(91, 101)) + list(range(106, 116))
    assert len(jde.part1_layers("dn53")) == 75 and len(jde.part1_layers("alt1")) == 94
    with pytest.raises(ValueError, match="does not separate"):
        jde.part2_layers([61, 74])  # 36 is missing: part 2 would need the image


def test_part2_from_split_tensors_at_a_small_input(jde):
    # a smaller multiple of 32 runs the same graph (strides come from the architecture)
    x = torch.rand(2, 3, 192, 320, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        full = jde(x)
        for split in SPLITS:
            feats = jde.forward_part1(x, split)
            assert torch.equal(jde.forward_part2(feats, split), full)
    assert full.shape == (2, 4 * (6 * 10 + 12 * 20 + 24 * 40), 518)


def test_prediction_rows(full_output):
    rows = full_output[0]
    assert torch.all(rows[:, 5] == 0)
    norms = rows[:, 6:].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert torch.all((rows[:, 4] > 0) & (rows[:, 4] < 1))
    # the random network is input-dependent and sparse: a few proposals pass 0.5
    assert 0 < int((rows[:, 4] > 0.5).sum()) < 500


def test_yolo_decode_formula():
    anchors = [(8.0, 24.0), (11.0, 34.0), (16.0, 48.0), (23.0, 68.0)]
    layer = YOLODecode(anchors, stride=8, embedding_dim=4)
    head = torch.zeros(1, 24 + 4, 2, 3)
    a, gy, gx = 2, 1, 2
    dx, dy, dw, dh, bg, fg = 0.5, -0.25, math.log(2.0), 0.0, 0.0, 1.0
    for k, v in enumerate((dx, dy, dw, dh, bg, fg)):
        head[0, 6 * a + k, gy, gx] = v
    head[0, 24:, gy, gx] = torch.tensor([3.0, 4.0, 0.0, 0.0])
    out = layer(head)
    assert out.shape == (1, 4 * 2 * 3, 6 + 4)
    row = out[0, a * 6 + gy * 3 + gx]
    aw, ah = anchors[a]
    expected = [gx * 8 + aw * dx, gy * 8 + ah * dy, aw * 2.0, ah, 1 / (1 + math.exp(-1.0)), 0.0, 0.6, 0.8, 0, 0]
    assert torch.allclose(row, torch.tensor(expected), atol=1e-5)
    # the embedding is shared by the 4 anchors of a cell
    for other in range(4):
        assert torch.equal(out[0, other * 6 + gy * 3 + gx, 6:], row[6:])


def _official_layout(model: JDE) -> dict:
    state = dict(model.state_dict())
    for i in (85, 100, 115):
        for name, value in (("s_c", -4.15), ("s_r", -4.85), ("s_id", -2.3)):
            state[f"module_list.{i}.yolo_{i}.{name}"] = torch.full((1,), value)
    state["classifier.weight"] = torch.zeros(16, 512)
    state["classifier.bias"] = torch.zeros(16)
    return {"epoch": 29, "model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9}]}}


@pytest.mark.slow
def test_checkpoint_in_the_official_layout_loads_and_reproduces_outputs(tmp_path):
    source = load_jde(None, seed=7)
    path = tmp_path / "jde.1088x608.uncertainty.pt"
    torch.save(_official_layout(source), path)
    loaded = load_jde(path)
    assert loaded.weights_id == source.weights_id
    assert loaded.weights_id != load_jde(None, seed=8).weights_id
    x = torch.rand(1, 3, 192, 320, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded(x), source(x))


@pytest.mark.slow
def test_checkpoint_without_batch_counters_loads(tmp_path):
    source = load_jde(None, seed=7)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "w.pt")
    assert load_jde(tmp_path / "w.pt").weights_id == source.weights_id


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("module_list.37.batch_norm_37.running_var"), "missing weight 'module_list.37.batch_norm_37.running_var'"),
        (lambda s: s.__setitem__("module_list.0.conv_0.weight", torch.zeros(16, 3, 3, 3)),
         "'module_list.0.conv_0.weight' has shape (16, 3, 3, 3), expected (32, 3, 3, 3)"),
        (lambda s: s.__setitem__("module_list.116.conv_116.weight", torch.zeros(1)), "unexpected weight 'module_list.116.conv_116.weight'"),
    ],
)
def test_checkpoint_that_does_not_fit_names_the_first_bad_key(tmp_path, edit, message):
    state = dict(load_jde(None).state_dict())
    edit(state)
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as info:
        load_jde(tmp_path / "bad.pt")
    assert message in str(info.value)


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        load_jde(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot read .* as a PyTorch checkpoint"):
        load_jde(tmp_path / "junk.pt")
    torch.save({"epoch": 3}, tmp_path / "nomodel.pt")
    with pytest.raises(WeightsError, match="holds no JDE state dict"):
        load_jde(tmp_path / "nomodel.pt")


def test_bad_calls_are_clear_errors(jde):
    with pytest.raises(SplitError, match="unknown split 'dn54'"):
        get_split("dn54")
    assert get_split("Backbone").layers == (84, 99, 114)
    with pytest.raises(ValueError, match="multiples of 32"):
        jde.forward_part1(torch.zeros(1, 3, 100, 100), "dn53")
    feats = [torch.zeros(1, 256, 24, 40), torch.zeros(1, 512, 12, 20), torch.zeros(1, 1000, 6, 10)]
    with pytest.raises(ValueError, match="layer 74 must be"):
        jde.forward_part2(feats, "dn53")
    with pytest.raises(ValueError, match="needs 3 tensors"):
        jde.forward_part2(feats[:2], "dn53")


def test_forward_heads_are_what_the_prediction_layers_decode(jde):
    x = torch.rand(1, 3, 192, 320, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        full = jde(x)
        for split in SPLITS:
            heads = jde.forward_heads(jde.forward_part1(x, split), split)
            assert [h.shape[1] for h in heads] == [536, 536, 536]
            assert torch.equal(jde.forward_part2(heads, "backbone"), full)
