import pytest

from fcm_common.data.mot_format import MotFormatError, MotRow, format_rows, read_rows, write_rows


def test_round_trip_is_exact(tmp_path):
    rows = [
        MotRow(1, 3, 305.4159433860607, 942.0004760742188, 3.9827311478004517, 272.1777709960937, 0.7611302733421326),
        MotRow(2, 3, 0.1 + 0.2, 1e-9, 12.0, 1 / 3, 1.0),
        MotRow(10, 12, -4.5, 7.25, 100.0, 200.0, 0.5),
        MotRow(11, 12, 0.0, -0.9999999999999999, 1e-3, 2.5e-7, 0.5),
    ]
    path = tmp_path / "tracks.txt"
    write_rows(path, rows)
    assert read_rows(path) == rows
    lines = path.read_text().splitlines()
    # files are 1-based (MOTChallenge): x and y plus one, exactly in decimal
    assert lines[2] == "10,12,-3.5,8.25,100.0,200.0,0.5,-1,-1,-1"
    assert lines[1].startswith("2,3,1.30000000000000004,1.000000001,")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    write_rows(path, rows, origin=0)
    assert path.read_text() == format_rows(rows) and read_rows(path, origin=0) == rows


def test_other_trackers_files(tmp_path):
    path = tmp_path / "res.txt"
    path.write_text("1,3,113.84,274.5,57.307,130.05,-1,-1,-1,-1\n2,3,116.37,265.2,62.858,142.64\n")
    assert read_rows(path) == [MotRow(1, 3, 112.84, 273.5, 57.307, 130.05, -1.0), MotRow(2, 3, 115.37, 264.2, 62.858, 142.64)]
    assert read_rows(path, origin=0)[0] == MotRow(1, 3, 113.84, 274.5, 57.307, 130.05, -1.0)
    assert format_rows([]) == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3,4,5\n", ":1: expected at least 6"),
        ("1,2,3,4,5,6,7\n1,2,a,4,5,6,7\n", ":2: non-numeric"),
        ("0,2,3,4,5,6,7\n", "frame numbers start at 1"),
        ("1,2,3,4,-5,6\n", ":1: box width and height must be positive"),
        ("1,2,inf,4,5,6\n", ":1: a field is not a finite number"),
        ("1,2,3,4,5,6\n1,2,3,4,5,6\n", ":2: track 2 appears twice in frame 1 (also on line 1)"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(MotFormatError) as info:
        read_rows(path)
    assert message in str(info.value)


def test_missing_file_and_bad_origin(tmp_path):
    with pytest.raises(MotFormatError, match="file not found"):
        read_rows(tmp_path / "none.txt")
    with pytest.raises(MotFormatError, match="0 or 1"):
        read_rows(tmp_path / "none.txt", origin=2)
