"""Ground-truth files: layouts recognised from the file, every line validated."""

import numpy as np
import pytest

from fcm_common.data.ground_truth import GroundTruthError, read_ground_truth


def _gt(tmp_path, text, name="gt.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mot15_layout_has_world_coordinates_and_no_class(tmp_path):
    # PETS09-S2L1 rows (2DMOT2015): the 8th field is x_world, not a class
    path = _gt(tmp_path, "147,9,241.875,120.625,17.407,51.980,1,-8.3954,-6.7551,0\n"
                         "147,12,405.000,71.875,12.428,36.858,0,-4.1744,-8.0957,0\n")
    gt = read_ground_truth(path)
    assert gt.layout == "mot15" and not gt.has_classes and gt.visibility is None
    assert gt.frame.tolist() == [147, 147] and gt.ids.tolist() == [9, 12] and gt.flag.tolist() == [1, 0]
    np.testing.assert_array_equal(gt.boxes[1], [405.0, 71.875, 12.428, 36.858])
    assert gt.last_frame == 147 and len(gt.until(146)) == 0


def test_mot16_layout_has_class_and_visibility(tmp_path):
    path = _gt(tmp_path, "1,1,912,484,97,109,0,7,1.0\n1,2,1338,418,167,379,1,1,0.5\n")
    gt = read_ground_truth(path)
    assert gt.layout == "mot16" and gt.cls.tolist() == [7, 1] and gt.visibility.tolist() == [1.0, 0.5]


def test_a_layout_can_be_forced(tmp_path):
    # a 10-field file whose 8th field really is a class: force the MOT16 layout
    path = _gt(tmp_path, "1,1,10,10,5,5,1,1,1,-1\n")
    assert read_ground_truth(path).layout == "mot15"
    assert read_ground_truth(path, "mot16").cls.tolist() == [1]
    # and a 9-field file read without its classes
    path = _gt(tmp_path, "1,1,10,10,5,5,1,7,1\n", "b.txt")
    assert not read_ground_truth(path, "mot15").has_classes


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,1,10,10\n", "gt.txt:1: 4 comma-separated fields, which fits no MOTChallenge ground-truth layout"),
        ("1,1,10,10,5,5,1,1\n", ":1: 8 comma-separated fields"),
        ("1,1,10,10,5,5,1,1,1\n2,1,10,10,5,5,1,1\n", "gt.txt:2: 8 fields where the file's first line has 9"),
        ("1,1,10,10,-5,5,1,1,1\n", ":1: box width -5 is not positive"),
        ("1,1,10,10,5,0,1,1,1\n", ":1: box height 0 is not positive"),
        ("0,1,10,10,5,5,1,1,1\n", ":1: frame 0: frame numbers start at 1"),
        ("1,1,a,10,5,5,1,1,1\n", ":1: x 'a' is not a number"),
        ("1,1,10,10,5,5,1,1,1\n1,x,10,10,5,5,1,1,1\n", ":2: id 'x' is not a number"),
        ("1.5,1,10,10,5,5,1,1,1\n", ":1: frame '1.5' is not an integer"),
        ("1,1,nan,10,5,5,1,1,1\n", ":1: x is nan, not a finite number"),
        ("1,1,10,10,5,5,1,14,1\n", ":1: class 14 is not a MOTChallenge class"),
        ("1,1,10,10,5,5,1,1,2\n", ":1: visibility 2 is outside [0, 1]"),
        ("1,1,10,10,5,5,1,1,1\n1,1,20,10,5,5,1,1,1\n", ":2: id 1 appears twice in frame 1 (also on line 1)"),
        ("\n\n", "no ground-truth rows"),
        ("frame,id,x,y,w,h,flag,class,vis\n", ":1: frame 'frame' is not a number"),
    ],
)
def test_bad_files_are_refused_naming_file_line_and_field(tmp_path, text, message):
    path = _gt(tmp_path, text)
    with pytest.raises(GroundTruthError) as info:
        read_ground_truth(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_forcing_mot16_on_world_coordinates_says_so(tmp_path):
    path = _gt(tmp_path, "147,12,405.000,71.875,12.428,36.858,0,-4.1744,-8.0957,0\n")
    with pytest.raises(GroundTruthError, match="class -4.1744 .*mot15 layout"):
        read_ground_truth(path, "mot16")


def test_missing_or_unknown(tmp_path):
    with pytest.raises(GroundTruthError, match="ground truth not found"):
        read_ground_truth(tmp_path / "none.txt")
    with pytest.raises(GroundTruthError, match="unknown ground-truth layout"):
        read_ground_truth(tmp_path / "none.txt", "mot17")
    with pytest.raises(GroundTruthError, match="a folder"):
        read_ground_truth(tmp_path)
