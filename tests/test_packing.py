import numpy as np
import pytest

from fcm_common.coding.packing import PackingError, anchor_layout, near_square_grid, pack, single_tensor_layout, unpack
from fcm_common.model.splits import SPLITS


def test_anchor_frames_have_the_framework_sizes():
    dn53 = anchor_layout(SPLITS["dn53"].shapes_1088x608)
    assert (dn53.width, dn53.height) == (2176, 2128)
    assert [g.frame_height for g in dn53.grids] == [1216, 608, 304]
    assert [(g.rows, g.cols) for g in dn53.grids] == [(16, 16), (16, 32), (16, 64)]
    assert dn53.source_index == (0, 1, 2)  # 36, 61, 74 are already largest first
    alt1 = anchor_layout(SPLITS["alt1"].shapes_1088x608)
    assert (alt1.width, alt1.height) == (1088, 2128)
    assert alt1.source_index == (2, 1, 0)  # 105 (128x76x136) is the largest
    assert [(g.rows, g.cols) for g in alt1.grids] == [(16, 8), (16, 16), (16, 32)]
    backbone = anchor_layout(SPLITS["backbone"].shapes_1088x608)
    assert backbone.source_index == (2, 1, 0)
    # no framework anchor exists here (536 = 8 x 67 does not re-flow exactly): partial last rows
    assert (backbone.width, backbone.height) == (1088, 6707)
    assert [(g.rows, g.cols) for g in backbone.grids] == [(67, 8), (34, 16), (17, 32)]


def test_channels_go_in_raster_order(rng):
    shapes = [(6, 2, 3), (3, 2, 3)]
    tensors = [rng.integers(0, 1000, size=s).astype(np.uint16) for s in shapes]
    layout = anchor_layout(shapes)
    frame = pack(tensors, layout)
    g = layout.grids[0]
    assert (g.rows, g.cols) == (3, 2)
    # channel 3 of the first tensor: tile row 1, tile column 1
    assert np.array_equal(frame[2:4, 3:6], tensors[0][3])
    assert [u.tolist() for u in unpack(frame, layout)] == [t.tolist() for t in tensors]


@pytest.mark.parametrize("split", list(SPLITS))
def test_pack_unpack_round_trip_is_exact(split, rng):
    shapes = [(c, h // 4, w // 4) for c, h, w in SPLITS[split].shapes(1088, 608)]
    tensors = [rng.normal(size=s).astype(np.float32) for s in shapes]
    layout = anchor_layout(shapes)
    out = unpack(pack(tensors, layout), layout)
    assert all(np.array_equal(a, b) for a, b in zip(out, tensors))


@pytest.mark.parametrize(
    "k, grid, size",
    [(1024, (32, 32), (1088, 608)), (768, (32, 24), (816, 608)), (536, (23, 24), (816, 437)), (512, (32, 16), (544, 608)),
     (364, (26, 14), (476, 494)), (256, (16, 16), (544, 304)), (192, (16, 12), (408, 304)), (128, (16, 8), (272, 304)),
     (96, (12, 8), (272, 228)), (64, (8, 8), (272, 152))],
)
def test_single_tensor_layouts(k, grid, size, rng):
    layout = single_tensor_layout(k, 19, 34)
    g = layout.grids[0]
    assert (g.rows, g.cols) == grid
    assert (layout.width, layout.height) == size
    t = rng.integers(0, 1024, size=(k, 19, 34)).astype(np.uint16)
    frame = pack([t], layout, fill=7)
    assert np.array_equal(unpack(frame, layout)[0], t)
    spare = g.rows * g.cols - k
    if spare:  # unused tiles hold the fill value
        assert np.all(frame[-19:, -34 * spare:] == 7)


def test_near_square_rule():
    assert near_square_grid(256, 76, 136) == (16, 16)
    assert near_square_grid(512, 38, 68) == (32, 16)
    assert near_square_grid(12, 10, 5) == (3, 4)  # tall tiles: the short side runs down


def test_errors():
    layout = anchor_layout([(4, 2, 2)])
    with pytest.raises(PackingError, match="layout has 1 tensors"):
        pack([np.zeros((4, 2, 2)), np.zeros((4, 2, 2))], layout)
    with pytest.raises(PackingError, match="layout expects"):
        pack([np.zeros((4, 2, 3))], layout)
    with pytest.raises(PackingError, match="cannot be re-flowed"):
        anchor_layout([(4, 2, 8), (3, 2, 3)])
