import math

import pytest
import torch
import torch.nn.functional as F

from fcm_common.model.splits import SPLITS
from fcm_common.msfc.checkpoint import CheckpointError, MSFCCheckpoint, load_checkpoint, save_checkpoint
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, arch_for_split, count_parameters, scale_order
from fcm_common.msfc.qact import QACTError, QACTTable, load_qact
from fcm_common.msfc.training import TrainSettings, error_by_channels, learning_rate, sls_mask, train_step

TINY = dict(msff_widths=(16, 32), msfr_widths=(8, 16, 32), se_reduction=4)


@pytest.mark.parametrize("split", list(SPLITS))
def test_shapes_per_split_at_1088x608(split):
    torch.manual_seed(0)
    sp = SPLITS[split]
    model = AdvMSFC(arch_for_split(split), scale_order(split)).eval()
    feats = [torch.randn(1, *shape) for shape in sp.shapes_1088x608]
    with torch.no_grad():
        code = model.encode(feats)
        assert tuple(code.shape) == (1, sp.fused_channels, 19, 34)
        out = model.decode(code)
    assert [tuple(t.shape[1:]) for t in out] == list(sp.shapes_1088x608)


def test_architectures_come_from_the_cfg():
    arch = arch_for_split("alt1")
    assert arch.in_channels == (128, 256, 512)  # finest first; alt1 lists the coarsest first
    assert scale_order("alt1") == [2, 1, 0] and scale_order("dn53") == [0, 1, 2]
    assert arch.fused_channels == 512 and arch.msff_widths == (256, 512)


def tiny_model(split="dn53", channels=(8, 16, 32), fused=16):
    return AdvMSFC(MSFCArch(channels, fused, **TINY), scale_order(split))


def test_zero_fill_matches_the_sls_mask():
    code = torch.randn(3, 10, 4, 5)
    filled = AdvMSFC.zero_fill(code[:, :4], 10)
    assert torch.equal(filled[:, :4], code[:, :4]) and torch.all(filled[:, 4:] == 0)
    assert AdvMSFC.zero_fill(code, 10) is code
    with pytest.raises(ValueError, match="exceed"):
        AdvMSFC.zero_fill(code, 8)
    gen = torch.Generator().manual_seed(0)
    masked = sls_mask(code, gen)
    for b in range(3):  # each sample keeps a prefix of its channels
        kept = (masked[b].flatten(1).abs().sum(1) > 0).tolist()
        n = sum(kept)
        assert kept == [True] * n + [False] * (10 - n)


def test_truncation_changes_the_reconstruction_and_decoding_is_deterministic():
    model = tiny_model().eval()
    feats = [torch.randn(2, 8, 16, 24), torch.randn(2, 16, 8, 12), torch.randn(2, 32, 4, 6)]
    with torch.no_grad():
        full, again, cut = model(feats), model(feats), model(feats, keep=3)
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert not torch.allclose(full[0], cut[0])


def _synthetic(gen, mix, batch=8, rank=6, h=6, w=10):
    """Features of three scales driven by one low-rank latent with decreasing energies."""
    z = F.interpolate(torch.randn(batch, rank, h // 2, w // 2, generator=gen), size=(h, w), mode="bilinear", align_corners=False)
    z = z * torch.linspace(2.0, 0.3, rank)[None, :, None, None]
    out = []
    for m, s in zip(mix, (4, 2, 1)):
        up = F.interpolate(z, scale_factor=s, mode="bilinear", align_corners=False) if s > 1 else z
        out.append(torch.einsum("brhw,cr->bchw", up, m) + 0.05 * torch.randn(batch, m.shape[0], h * s, w * s, generator=gen))
    return out


def _train(sls: bool, steps=300):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    mix = [torch.randn(c, 6, generator=gen) for c in (8, 16, 32)]
    model = tiny_model()
    feats = _synthetic(gen, mix, 64)
    model.set_statistics([f.mean((0, 2, 3)) for f in feats], [f.std((0, 2, 3)) for f in feats])
    settings = TrainSettings(split="dn53", steps=steps, batch_size=8, lr=2e-3, sls=sls)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    step_gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        train_step(model, _synthetic(gen, mix), opt, step_gen, settings)
    return error_by_channels(model, _synthetic(torch.Generator().manual_seed(99), mix, 32), [0, 1, 2, 3, 4, 6, 8, 12, 16])


@pytest.mark.slow
def test_sls_orders_channels_by_importance():
    sls = _train(True)
    errors = list(sls.values())
    # the reconstruction error falls as more channels are kept ...
    assert all(b <= a * 1.02 for a, b in zip(errors, errors[1:])), sls
    assert sls[1] < 0.8 * sls[0] and sls[4] < 0.5 * sls[0]
    # ... and the first channels carry nearly everything (the latent has rank 6)
    assert sls[6] < 1.2 * sls[16]
    # without SLS the information is spread over all channels
    plain = _train(False)
    assert sls[4] < 0.6 * plain[4], (sls, plain)


def test_learning_rate_schedule():
    s = TrainSettings(split="dn53", steps=1000, lr=1e-3, lr_min=1e-5, warmup=50)
    assert learning_rate(0, s) == pytest.approx(1e-3 / 50)
    assert learning_rate(49, s) == pytest.approx(1e-3)
    assert learning_rate(525, s) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    assert learning_rate(1000, s) == pytest.approx(1e-5)


def _checkpoint(model, split="dn53", jde="ab" * 32):
    return MSFCCheckpoint(split=split, model=model, jde_weights_id=jde, qact=load_qact(split), code_range=(-2.5, 3.0),
                          training={"steps": 5}, step=5)


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(fused=1024).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, _checkpoint(model))
    loaded = load_checkpoint(path, split="dn53", jde_weights_id="ab" * 32)
    assert loaded.model_id == _checkpoint(model).model_id
    assert loaded.code_range == (-2.5, 3.0) and loaded.step == 5 and loaded.qact == load_qact("dn53")
    feats = [torch.randn(1, 8, 16, 24), torch.randn(1, 16, 8, 12), torch.randn(1, 32, 4, 6)]
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(feats, keep=100), loaded.model(feats, keep=100)))


def test_mismatched_or_damaged_checkpoints_are_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _checkpoint(tiny_model(fused=1024)))
    with pytest.raises(CheckpointError, match="trained for split 'dn53', not 'alt1'"):
        load_checkpoint(path, split="alt1")
    with pytest.raises(CheckpointError, match="trained against JDE weights abab"):
        load_checkpoint(path, jde_weights_id="cd" * 32)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["msff.project.bias"] += 1
    torch.save(data, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match the recorded model identifier"):
        load_checkpoint(tmp_path / "tampered.pt")
    data["arch"]["fused_channels"] = 12
    torch.save(data, tmp_path / "arch.pt")
    with pytest.raises(CheckpointError, match="do not fit the recorded architecture"):
        load_checkpoint(tmp_path / "arch.pt")
    torch.save({"model": {}}, tmp_path / "jde.pt")
    with pytest.raises(CheckpointError, match="not an advMSFC checkpoint"):
        load_checkpoint(tmp_path / "jde.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_qact_tables():
    assert load_qact("dn53").channels == (1024, 768, 512, 364, 256, 192)
    assert load_qact("alt1").channels == (512, 256, 192, 128, 96, 64)
    table = load_qact("backbone")
    assert table.channels == (536, 256, 192, 128, 96, 64)
    assert table.channels_for(table.qps[2]) == 192
    t = QACTTable((22, 27, 32), (500, 300, 100))
    assert [t.channels_for(q) for q in (10, 24, 25, 30, 60)] == [500, 500, 300, 100, 100]
    assert t.channels_for(29) == 300  # nearest
    with pytest.raises(QACTError):
        QACTTable((22, 22), (1, 2))
    with pytest.raises(QACTError, match="not found"):
        load_qact("dn53", "/nonexistent.toml")


def test_parameter_counts_are_reported():
    counts = {s: (count_parameters(m.msff), count_parameters(m.msfr)) for s in SPLITS
              for m in [AdvMSFC(arch_for_split(s), scale_order(s))]}
    assert all(a > 1e6 and b > 1e6 for a, b in counts.values())
    assert counts["dn53"][0] > counts["alt1"][0]


def test_calibration_picks_the_frontier():
    from fcm_ctc.calibration import choose_channels, hull_gap, upper_hull

    assert upper_hull([(0, 0), (1, 2), (2, 2.5), (1.5, 1)]) == [(0, 0), (1, 2), (2, 2.5)]
    points = {  # (qp, k): (kbps, MOTA)
        (27, 64): (100, 0.60), (27, 256): (300, 0.70), (27, 536): (900, 0.71),
        (37, 64): (30, 0.40), (37, 256): (80, 0.62), (37, 536): (250, 0.50),
    }
    assert choose_channels(points, [27, 37]) == {27: 536, 37: 256}
    # QP 37 at k = 536 costs more than QP 27 at k = 64 for less accuracy: below the frontier, never chosen,
    # though it is QP 37's most expensive point; QP 27's best point is on the frontier, so it is chosen
    # over the cheaper (27, 256), which is on it too
    hull = upper_hull([(math.log10(r), m) for r, m in points.values()])
    assert (math.log10(250), 0.50) not in hull and (math.log10(900), 0.71) in hull
    # a QP none of whose points is on the frontier: the one closest below it, not the most accurate
    below = {**points, (32, 64): (60, 0.30), (32, 256): (290, 0.60), (32, 536): (1000, 0.605)}
    gaps = {k: hull_gap((math.log10(below[(32, k)][0]), below[(32, k)][1]), hull) for k in (64, 256, 536)}
    assert all(gap > 0 for gap in gaps.values()) and min(gaps, key=gaps.get) == 256
    assert choose_channels(below, [27, 32, 37]) == {27: 536, 32: 256, 37: 256}


def test_feature_store_is_built_once_and_reused(small_jde, tmp_path):
    from fcm_common.msfc.training import FeatureStore

    frames = iter([torch.rand(3, 192, 320, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    key = {"jde": small_jde.weights_id, "split": "alt1"}
    store = FeatureStore.build(tmp_path / "f", key, small_jde, frames, 2, "alt1", "cpu", with_heads=True)
    assert FeatureStore.matches(tmp_path / "f", key) and not FeatureStore.matches(tmp_path / "f", {**key, "split": "dn53"})
    feats, heads = next(store.batches(3, torch.Generator().manual_seed(0), "cpu"))
    assert [tuple(t.shape) for t in feats] == [(3, 512, 6, 10), (3, 256, 12, 20), (3, 128, 24, 40)]
    assert all(t.dtype == torch.float32 for t in feats) and len(heads) == 3
    with torch.no_grad():
        exact = small_jde.forward_part1(torch.rand(3, 192, 320, generator=torch.Generator().manual_seed(0))[None], "alt1")
    reopened = FeatureStore(tmp_path / "f")  # memory-mapped from the folder
    first = reopened._unflatten(reopened.features[[0]], reopened.meta["shapes"])
    assert all(torch.allclose(a.float(), b, atol=2e-2 * b.abs().max().item()) for a, b in zip(first, exact))
    feats, heads = next(store.batches(2, torch.Generator().manual_seed(0), "cpu", crop=(2, 3), coarsest=0))
    assert [tuple(t.shape[2:]) for t in feats] == [(2, 3), (4, 6), (8, 12)]


def test_linear_code_starts_as_pca_and_reconstructs_exactly_with_every_channel():
    from fcm_common.msfc.training import init_linear_code

    torch.manual_seed(0)
    arch = MSFCArch((2, 3, 4), 2 * 16 + 3 * 4 + 4, fusion="linear")
    model = AdvMSFC(arch, (2, 1, 0))  # split order coarsest first, like alt1/backbone
    def batch():  # split order: coarsest (4 channels), middle (3), finest (2)
        return [torch.randn(4, 4, 2, 3) * 3 + 1, torch.randn(4, 3, 4, 6), torch.randn(4, 2, 8, 12) * 0.5]
    batches = iter([batch() for _ in range(20)])
    explained = init_linear_code(model, batches, 20)
    assert explained[-1] == pytest.approx(1.0) and torch.all(explained[1:] >= explained[:-1])
    feats = batch()
    with torch.no_grad():
        out = model(feats)
        code = model.encode(feats)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(out, feats))
    assert [tuple(t.shape) for t in out] == [tuple(t.shape) for t in feats]
    var = code.var(dim=(0, 2, 3))
    assert float(var[0]) > 0.3 and float(var[0]) < 3  # whitened: about unit variance
    assert MSFCArch.from_dict(arch.to_dict()) == arch and "fusion" in arch.to_dict()
    assert "fusion" not in MSFCArch((2, 3, 4), 4, (8, 8), (4, 4, 4)).to_dict()  # conv identifiers unchanged


def test_output_loss_reads_what_the_tracker_reads():
    from fcm_common.msfc.training import output_loss

    torch.manual_seed(0)
    exact = torch.randn(2, 24 + 8, 4, 5)
    exact[:, 5] = 6.0  # anchor 0's foreground logit: a sure detection everywhere
    exact[:, 4] = -6.0
    exact[:, 10::6], exact[:, 11:24:6] = 4.0, -4.0  # anchors 1-3: sure background
    assert float(output_loss([exact], [exact])) == pytest.approx(0.0, abs=1e-6)
    lost = exact.clone()
    lost[:, 5] = -6.0  # the detection vanishes
    moved = exact.clone()
    moved[:, 0] += 0.5  # its box moves
    turned = exact.clone()
    turned[:, 24:] = -turned[:, 24:]  # its embedding flips
    far = exact.clone()
    far[:, 11] += 0.3  # a background anchor's foreground logit moves a little: hardly matters
    losses = [float(output_loss([x], [exact])) for x in (lost, moved, turned, far)]
    assert min(losses[:3]) > 10 * losses[3] > 0


def test_through_codec_removes_small_coefficients_with_straight_through_gradients():
    from fcm_common.msfc.training import through_codec

    torch.manual_seed(0)
    smooth = torch.linspace(-1, 1, 8 * 12).reshape(1, 1, 8, 12).repeat(2, 3, 1, 1)
    code = (smooth + 0.002 * torch.randn(2, 3, 8, 12)).requires_grad_(True)  # a ramp and faint texture
    low = through_codec(code, torch.Generator().manual_seed(0), (0, 0))
    high = through_codec(code, torch.Generator().manual_seed(0), (45, 45))
    err_low, err_high = float((low - code).abs().mean().detach()), float((high - code).abs().mean().detach())
    assert err_low < 0.01 < err_high  # a low QP keeps the code, a high one does not
    assert float((high - smooth).abs().mean().detach()) < 0.15  # the ramp survives (as a staircase of block means)
    high.sum().backward()
    assert torch.allclose(code.grad, torch.ones_like(code))
