import pytest

from fcm_common.data.mot_format import MotFormatError, MotRow, format_rows, read_rows, write_rows


def test_round_trip_is_exact(tmp_path):
    rows = [
        MotRow(1, 3, 305.4159433860607, 942.0004760742188, 3.9827311478004517, 272.1777709960937, 0.7611302733421326),
        MotRow(2, 3, 0.1 + 0.2, 1e-9, 12.0, 1 / 3, 1.0),
        MotRow(10, 12, -4.5, 7.25, 100.0, 200.0, 0.5),
    ]
    path = tmp_path / "tracks.txt"
    write_rows(path, rows)
    assert read_rows(path) == rows
    assert path.read_text().splitlines()[2] == "10,12,-4.5,7.25,100.0,200.0,0.5,-1,-1,-1"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_ground_truth_lines_read_their_first_seven_fields(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,912,484,97,109,0,7,1\n2,1,912,484,97,109,1,1,0.5\n")
    assert read_rows(path) == [MotRow(1, 1, 912, 484, 97, 109, 0), MotRow(2, 1, 912, 484, 97, 109, 1)]
    assert format_rows([]) == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3,4,5,6\n", ":1: expected at least 7"),
        ("1,2,3,4,5,6,7\n1,2,a,4,5,6,7\n", ":2: non-numeric"),
        ("0,2,3,4,5,6,7\n", "frame numbers start at 1"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(MotFormatError) as info:
        read_rows(path)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(MotFormatError, match="file not found"):
        read_rows(tmp_path / "none.txt")
