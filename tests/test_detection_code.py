"""The backbone split's detections code: only the proposals JDE keeps are coded, and part 2 and the
tracker see the same detections (fcm_common/msfc/detection_code.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcm_common.model.proposals import select
from fcm_common.msfc.detection_code import (
    BOX_CHANNELS,
    harmonic_fill,
    prediction_anchors,
)
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, MSFCConfigError, scale_order


def detections_model(jde, components: int, patch: int = 0, skirt: float | None = None) -> AdvMSFC:
    anchors, strides = prediction_anchors(jde.prediction_layers())
    c = jde.split_shapes("backbone")[0][0]
    arch = MSFCArch(in_channels=(c, c, c), fused_channels=BOX_CHANNELS + components, fusion="detections",
                    anchors=anchors, strides=strides, patch=patch, skirt=skirt)
    return AdvMSFC(arch, scale_order("backbone")).eval()


def identity_basis(model: AdvMSFC) -> None:
    """Every embedding component coded as it is (the normalised embedding itself, |e_i| <= 1)."""
    for end in (model.msff, model.msfr):
        end.embedding_mean.zero_()
        end.embedding_basis.copy_(torch.eye(*end.embedding_basis.shape))
        end.embedding_scale.fill_(1.0)


def kept(jde, feats) -> torch.Tensor:
    rows = jde.forward_part2(feats, "backbone")[0]
    return rows[select(rows)]


def assert_same_detections(exact: torch.Tensor, coded: torch.Tensor, emb_cos: float = 0.9999) -> None:
    assert len(exact) == len(coded)
    order_e = torch.argsort(exact[:, 0] * 1e4 + exact[:, 1])
    order_c = torch.argsort(coded[:, 0] * 1e4 + coded[:, 1])
    e, c = exact[order_e], coded[order_c]
    torch.testing.assert_close(c[:, :4], e[:, :4], rtol=1e-4, atol=1e-3)  # boxes, input pixels
    torch.testing.assert_close(c[:, 4], e[:, 4], rtol=0, atol=1e-4)  # confidences
    cos = F.cosine_similarity(c[:, 6:], e[:, 6:], dim=1)
    assert bool((cos > emb_cos).all()), cos


def planted_features(jde, seed: int, people: int = 6) -> list[torch.Tensor]:
    """Backbone tensors (split order) of a network with ``jde``'s layout: background everywhere, and
    around each of ``people`` random places a few anchors that propose nearly the same box (what NMS
    thins out) at any of the three scales. (The seeded random network proposes only boxes centred
    outside the picture, which no real network does.)"""
    gen = torch.Generator().manual_seed(seed)
    layers = jde.prediction_layers()  # coarsest first, as the split lists its tensors
    feats = []
    for (c, h, w) in jde.split_shapes("backbone"):
        x = torch.zeros(1, c, h, w)
        x[0, [a * 6 + 5 for a in range(4)]] = -8.0
        x[0, 24:] = torch.randn(c - 24, h, w, generator=gen)
        feats.append(x)
    for _ in range(people):
        s = int(torch.randint(0, 3, (1,), generator=gen))
        _, _, h, w = feats[s].shape
        i, j, a = (int(torch.randint(0, n, (1,), generator=gen)) for n in (h, w, 4))
        for di, dj in ((0, 0), (0, 1), (1, 0)):  # the person, and two neighbours that NMS removes or keeps
            ii, jj = min(i + di, h - 1), min(j + dj, w - 1)
            x = feats[s][0]
            x[a * 6 : a * 6 + 4, ii, jj] = (torch.rand(4, generator=gen) - 0.5) * torch.tensor([0.8, 0.8, 1.0, 1.0])
            x[a * 6 + 5, ii, jj] = 1.0 + 4 * float(torch.rand(1, generator=gen)) - (di + dj)
    assert len(layers) == 3
    return feats


@pytest.fixture(scope="module")
def frames_features(small_jde):
    return [planted_features(small_jde, seed) for seed in range(4)]


@pytest.mark.parametrize("patch, skirt", [(0, None), (2, -0.6)])
def test_every_channel_gives_jde_s_own_detections_official_layout(small_jde, frames_features, patch, skirt):
    """JDE-1088x608's layout (536 channels, 512-d embedding; random weights, 320x192 input): the code of
    every channel, uncompressed, gives the detections the exact features give (with or without each
    proposal's values spread on its neighbourhood under a confidence skirt)."""
    model = detections_model(small_jde, components=small_jde.embedding_dim, patch=patch, skirt=skirt)
    identity_basis(model)
    total = 0
    with torch.inference_mode():
        for feats in frames_features:
            code = model.encode(feats)
            assert code.shape[1:] == (BOX_CHANNELS + 512, *feats[2].shape[2:])  # on the finest grid
            assert float(code.abs().max()) <= 1.0
            exact = kept(small_jde, feats)
            assert_same_detections(exact, kept(small_jde, model.decode(code)))
            total += len(exact)
    assert total >= 12


def test_without_embedding_components_the_boxes_and_confidences_stay(small_jde, frames_features):
    model = detections_model(small_jde, components=8)
    with torch.inference_mode():
        for feats in frames_features:
            code = model.encode(feats)
            truncated = model.zero_fill(code[:, :BOX_CHANNELS], model.fused_channels)
            exact, coded = kept(small_jde, feats), kept(small_jde, model.decode(truncated))
            assert len(coded) == len(exact)
            torch.testing.assert_close(coded[:, :5].sort(0).values, exact[:, :5].sort(0).values, rtol=1e-4, atol=1e-3)


def test_nothing_outside_the_kept_proposals_reaches_part_2(small_jde, frames_features):
    """Every decoded proposal above the threshold is one the encoder kept: the rest is background."""
    model = detections_model(small_jde, components=4)
    with torch.inference_mode():
        for feats in frames_features:
            rows = small_jde.forward_part2(model.decode(model.encode(feats)), "backbone")[0]
            assert int((rows[:, 4] > 0.5).sum()) == len(kept(small_jde, feats))


def _rows(centres, sizes, scores, embedding_dim):
    n = len(centres)
    rows = torch.zeros(n, 6 + embedding_dim)
    rows[:, :2] = torch.tensor(centres, dtype=torch.float32)
    rows[:, 2:4] = torch.tensor(sizes, dtype=torch.float32)
    rows[:, 4] = torch.tensor(scores)
    rows[:, 6:] = F.normalize(torch.randn(n, embedding_dim, generator=torch.Generator().manual_seed(n)), dim=1)
    return rows


@pytest.mark.parametrize("patch, skirt", [(0, None), (1, None), (2, -0.6)])
def test_proposals_that_share_a_cell_are_both_coded(small_jde, patch, skirt):
    """Two kept proposals whose centres fall in one cell of the finest grid: the second goes to a free
    neighbour, with its box made relative to that cell, so both decode to their own boxes."""
    model = detections_model(small_jde, components=small_jde.embedding_dim, patch=patch, skirt=skirt)
    identity_basis(model)
    height, width = SMALL_GRID = (192 // 8, 320 // 8)
    # two boxes centred in cell (10, 20) (x 160..168, y 80..88) of different sizes, a third far away
    rows = _rows([(161.0, 81.0), (166.0, 87.0), (40.0, 30.0)], [(12.0, 30.0), (60.0, 150.0), (20.0, 40.0)],
                 [0.95, 0.9, 0.7], small_jde.embedding_dim)
    code = model.msff.raster(rows, height, width)[None]
    assert int((code[0, 0] > 0).sum()) == 3
    if skirt is not None:  # the neighbourhoods' confidence: the skirt, under the threshold
        assert int((code[0, 0] == skirt).sum()) > 3 * 8
    assert SMALL_GRID == tuple(code.shape[2:])
    x8, x16, x32 = model.msfr(code)
    decoded = small_jde.prediction_layers()[-1](x8)[0]  # the finest prediction layer
    assert_same_detections(rows, decoded[select(decoded, nms_threshold=1.0)])


def test_the_fill_is_harmonic_and_keeps_the_known_cells(rng):
    values = rng.normal(size=(3, 12, 17))
    known = np.zeros((12, 17), bool)
    known[rng.integers(0, 12, 6), rng.integers(0, 17, 6)] = True
    filled = harmonic_fill(values.copy(), known)
    np.testing.assert_array_equal(filled[:, known], values[:, known])
    padded = np.pad(filled, ((0, 0), (1, 1), (1, 1)), mode="edge")  # the Neumann border: a missing neighbour is itself
    mean = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]) / 4
    np.testing.assert_allclose(filled[:, ~known], mean[:, ~known], atol=1e-9)
    for c in range(3):  # maximum principle: nothing outside the known values' range
        assert values[c, known].min() - 1e-9 <= filled[c].min() and filled[c].max() <= values[c, known].max() + 1e-9


def test_the_fit_gives_orthonormal_components_ordered_by_variance(small_jde):
    from fcm_common.msfc.detection_code import fit_embedding_code

    model = detections_model(small_jde, components=6)
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 3, 2, 1, 0.5, 0.2] + [0.01] * 506)
    embeddings = F.normalize(torch.randn(400, 512, generator=gen) * scales + 1.0, dim=1)
    explained = fit_embedding_code(model.msff, model.msfr, embeddings)
    basis = model.msff.embedding_basis
    torch.testing.assert_close(basis.T @ basis, torch.eye(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.msfr.embedding_basis, basis)
    comps = (embeddings - model.msff.embedding_mean) @ basis
    var = comps.var(0)
    assert bool((var[:-1] >= var[1:]).all())
    assert 0 < float(explained[0]) < float(explained[5]) <= 1.0
    assert float((comps / model.msff.embedding_scale).abs().max()) <= 1.0  # one scale: 3.5 sd of the first


def test_the_architecture_is_checked():
    with pytest.raises(MSFCConfigError, match="prediction layers' inputs"):
        MSFCArch(in_channels=(64, 128, 256), fused_channels=10, fusion="detections")
    with pytest.raises(MSFCConfigError, match="within 5..133"):
        MSFCArch(in_channels=(152, 152, 152), fused_channels=140, fusion="detections")
    with pytest.raises(MSFCConfigError, match="anchors are missing"):
        AdvMSFC(MSFCArch(in_channels=(152, 152, 152), fused_channels=10, fusion="detections"))


def test_a_model_of_another_code_version_is_refused_with_the_remedy(small_jde, tmp_path):
    from fcm_common.msfc.checkpoint import CheckpointError, MSFCCheckpoint, load_checkpoint, save_checkpoint
    from fcm_common.msfc.qact import QACTTable

    model = detections_model(small_jde, components=4)
    path = tmp_path / "m.pt"
    save_checkpoint(path, MSFCCheckpoint("backbone", model, small_jde.weights_id, QACTTable((32,), (9,))))
    assert load_checkpoint(path).model.arch == model.arch
    data = torch.load(path, weights_only=True)
    data["arch"]["code_version"] = 0
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="refit the model"):
        load_checkpoint(path)

