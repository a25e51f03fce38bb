import cv2
import numpy as np
import pytest
import torch

from fcm_common.model.preprocess import Letterbox, letterbox, preprocess


@pytest.mark.parametrize("height, width", [(1080, 1920), (720, 1280)])
def test_hd_frames_become_1081x608_content_with_3_and_4_pixel_bars(height, width, rng):
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    padded, box = letterbox(image)
    assert padded.shape == (608, 1088, 3)
    assert box.content_size == (1081, 608)
    assert box.padding == (3, 4, 0, 0)
    assert np.all(padded[:, :3] == 128) and np.all(padded[:, 1084:] == 128)
    # the content is OpenCV's area resampling of the frame, untouched
    expected = cv2.resize(image, (1081, 608), interpolation=cv2.INTER_AREA)
    assert np.array_equal(padded[:, 3:1084], expected)


def test_4_3_frames_get_side_bars_and_odd_padding_goes_right():
    padded, box = letterbox(np.full((480, 640, 3), 7, np.uint8))
    assert box.content_size == (811, 608)
    assert box.padding == (138, 139, 0, 0)
    assert padded[0, 137, 0] == 128 and padded[0, 138, 0] == 7 and padded[0, 948, 0] == 7 and padded[0, 949, 0] == 128


def test_very_wide_frames_get_top_and_bottom_bars():
    padded, box = letterbox(np.full((400, 1600, 3), 50, np.uint8))
    assert box.content_size == (1088, 272)
    assert box.padding == (0, 0, 168, 168)
    assert padded.shape == (608, 1088, 3)
    assert padded[167, 0, 0] == 128 and padded[168, 0, 0] == 50 and padded[439, 0, 0] == 50 and padded[440, 0, 0] == 128


def test_tensor_is_rgb_over_255_without_normalisation():
    image = np.zeros((608, 1088, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 128, 1
    x, box = preprocess(image)
    assert box == Letterbox(1088, 608)
    assert x.shape == (3, 608, 1088) and x.dtype == torch.float32
    assert x[0, 0, 0] == 1.0 and x[1, 0, 0] == np.float32(128) / np.float32(255) and x[2, 0, 0] == np.float32(1 / 255)


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        letterbox(np.zeros((10, 10), np.uint8))
