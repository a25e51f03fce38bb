from collections import Counter

import pytest

from fcm_common.core.resources import DEFAULT_JDE_CFG, cfg_file
from fcm_common.model.darknet_cfg import CfgError, parse_cfg, parse_cfg_text


def test_shipped_cfg_describes_jde_1088x608():
    cfg = parse_cfg(cfg_file(DEFAULT_JDE_CFG))
    assert (cfg.width, cfg.height, cfg.channels) == (1088, 608, 3)
    assert len(cfg.layers) == 116
    counts = Counter(layer.type for layer in cfg.layers)
    assert counts == {"convolutional": 78, "shortcut": 23, "route": 10, "upsample": 2, "yolo": 3}
    assert [layer.index for layer in cfg.layers if layer.type == "yolo"] == [85, 100, 115]
    assert [cfg.layers[i].options["mask"] for i in (85, 100, 115)] == ["8,9,10,11", "4,5,6,7", "0,1,2,3"]
    # the embedding convs take their width from [net] via $embedding_dim
    assert [cfg.layers[i].get_int("filters") for i in (83, 98, 113)] == [512, 512, 512]
    # routes: absolute indices 61 and 36 feed the upsampling paths
    assert cfg.layers[89].get_ints("layers") == [-1, 61]
    assert cfg.layers[104].get_ints("layers") == [-1, 36]
    # biased linear convs are exactly the six head convs
    no_bn = [layer.index for layer in cfg.layers if layer.type == "convolutional" and layer.get_int("batch_normalize", 0) == 0]
    assert no_bn == [81, 83, 96, 98, 111, 113]


def test_parser_rules():
    cfg = parse_cfg_text(
        "# comment\n\n[net]\n width = 64 \nheight=32\ndim=7\n\n[convolutional]\nfilters=$dim\n  size=3\n"
        "# between\n[route]\nlayers = -1\n"
    )
    assert cfg.width == 64 and cfg.height == 32
    assert cfg.layers[0].options == {"filters": "7", "size": "3"}
    assert cfg.layers[1].get_ints("layers") == [-1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[convolutional]\nfilters=3\n", "first section must be [net]"),
        ("[net]\nwidth=1\n", "[net] has no 'height'"),
        ("[net]\nwidth=1\nheight=1\n[maxpool]\n", ":4: layer 0: unsupported section [maxpool]"),
        ("[net]\nwidth=1\nheight=1\n[convolutional]\nfilters\n", ":5: expected 'key=value'"),
        ("[net]\nwidth=1\nheight=1\n[convolutional]\nfilters=$nope\n", "names no [net] key"),
        ("[net\nwidth=1\n", "malformed section header"),
    ],
)
def test_parser_errors_name_the_place(text, message):
    with pytest.raises(CfgError, match=None) as info:
        parse_cfg_text(text)
    assert message in str(info.value)


def test_missing_cfg_file(tmp_path):
    with pytest.raises(CfgError, match="cfg file not found"):
        parse_cfg(tmp_path / "nope.cfg")
