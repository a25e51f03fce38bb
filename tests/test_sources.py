import cv2
import numpy as np
import pytest

from fcm_common.data.sources import SourceError, open_source
from fcm_common.data.synthetic import render_sequence, write_mot_sequence, write_video


def test_mot_sequence_folder(tmp_path):
    seq = write_mot_sequence(tmp_path / "SEQ-7", num_frames=5, width=320, height=180, fps=50)
    src = open_source(seq)
    assert (src.kind, src.name, src.fps, src.num_frames, src.width, src.height) == ("mot", "SEQ-7", 50.0, 5, 320, 180)
    assert src.gt_path == seq / "gt" / "gt.txt" and src.seqinfo_path == seq / "seqinfo.ini"
    frames = list(src.frames())
    expected, _ = render_sequence(5, 320, 180)
    assert len(frames) == 5 and all(np.array_equal(a, b) for a, b in zip(frames, expected))
    assert len(list(open_source(seq, max_frames=2).frames())) == 2


def test_image_folder_is_read_in_sorted_order(tmp_path):
    frames, _ = render_sequence(3, 64, 48)
    for name, frame in zip(["b.png", "a.png", "c.jpg"], frames):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(tmp_path)
    assert src.kind == "images" and src.fps == 30.0 and src.num_frames == 3
    assert [p.name for p in src.image_files] == ["a.png", "b.png", "c.jpg"]
    assert np.array_equal(next(iter(src.frames())), frames[1])
    assert open_source(tmp_path, fps=12.5).fps == 12.5


def test_video_file(tmp_path):
    path = write_video(tmp_path / "clip.mkv", num_frames=4, width=160, height=96, fps=25)
    src = open_source(path)
    assert (src.kind, src.fps, src.num_frames, src.width, src.height) == ("video", 25.0, 4, 160, 96)
    expected, _ = render_sequence(4, 160, 96)
    got = list(src.frames())
    assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(got, expected))  # FFV1 is lossless


def test_bad_inputs(tmp_path):
    with pytest.raises(SourceError, match="input not found"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image files"):
        open_source(tmp_path / "empty")
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot read .* as a video"):
        open_source(tmp_path / "fake.mp4")
    seq = write_mot_sequence(tmp_path / "S", num_frames=3, width=64, height=48)
    (seq / "img1" / "000003.png").unlink()
    with pytest.raises(SourceError, match="seqinfo.ini says 3 frames"):
        open_source(seq)
    (seq / "img1" / "000002.png").write_bytes(b"broken")
    (seq / "seqinfo.ini").write_text((seq / "seqinfo.ini").read_text().replace("seqLength=3", "seqLength=2"))
    src = open_source(seq)
    with pytest.raises(SourceError, match="cannot read image"):
        list(src.frames())


@pytest.mark.parametrize(
    "line, message",
    [
        ("frameRate=abc", "seqinfo.ini:4: frameRate=abc is not a positive number"),
        ("frameRate=nan", "seqinfo.ini:4: frameRate=nan is not a positive number"),
        ("frameRate=0", "seqinfo.ini:4: frameRate=0 is not a positive number"),
        ("seqLength=two", "seqinfo.ini:4: seqLength=two is not a positive integer"),
        ("imWidth=-3", "seqinfo.ini:4: imWidth=-3 is not a positive integer"),
    ],
)
def test_bad_seqinfo_names_file_line_and_field(tmp_path, line, message):
    seq = write_mot_sequence(tmp_path / "S", num_frames=2, width=64, height=48)
    lines = [entry for entry in (seq / "seqinfo.ini").read_text().splitlines()
             if entry.split("=")[0] != line.split("=")[0]]
    lines.insert(3, line)
    (seq / "seqinfo.ini").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError) as info:
        open_source(seq)
    assert message in str(info.value) and str(seq) in str(info.value)


def test_seqinfo_that_is_not_an_ini_file(tmp_path):
    seq = write_mot_sequence(tmp_path / "S", num_frames=2, width=64, height=48)
    (seq / "seqinfo.ini").write_text("seqLength=2\n")
    with pytest.raises(SourceError, match="not a valid seqinfo.ini"):
        open_source(seq)
