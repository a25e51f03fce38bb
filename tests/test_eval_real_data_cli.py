"""fcm-track --gt and fcm-eval on real MOTChallenge data: devkit numbers, hand-counted excerpts.

The excerpts are cut from the real sequences in shared/data and shipped in tests/data/real_gt; the
tracker is replaced by chosen tracks (copies of ground-truth boxes), so that every count below is
known by hand. fcm-eval's numbers on the result files that ship with motmetrics are the
MOTChallenge devkit's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from real_excerpts import excerpt, mot17_rows, pets09_rows

from fcm_common.data.mot_format import MotRow, read_rows


def _motmetrics_data() -> Path:
    import motmetrics as mm

    return Path(mm.__file__).parent / "data"


def _call(main, args):
    """A command in-process: (exit status, its return value)."""
    try:
        return 0, main.main([str(a) for a in args], standalone_mode=False)
    except SystemExit as exc:  # pragma: no cover - a command that exits itself
        return exc.code, None


# MOTChallenge devkit values of the motmetrics TUD result files (motmetrics' test_metrics.py).
DEVKIT = {
    #                 MOTA      MOTP      IDF1   FP   FN  IDs
    "TUD-Campus": (0.526462, 0.277201, 0.557659, 13, 150, 7),
    "TUD-Stadtmitte": (0.564014, 0.345904, 0.644619, 45, 452, 7),
    "OVERALL": (0.555116, 0.330177, 0.624296, 58, 602, 14),
}


def test_fcm_eval_gives_the_devkit_values_on_the_tud_files():
    from fcm_common.cli.evaluate import main

    data = _motmetrics_data()
    args = []
    for name in ("TUD-Campus", "TUD-Stadtmitte"):
        args += [data / name / "gt.txt", data / name / "test.txt"]
    status, summary = _call(main, args)
    assert status == 0
    assert list(summary.index) == ["TUD-Campus", "TUD-Stadtmitte", "OVERALL"]
    for name, (mota, motp, idf1, fp, fn, ids) in DEVKIT.items():
        row = summary.loc[name]
        assert round(row.MOTA, 6) == mota and round(row.MOTP, 6) == motp and round(row.IDF1, 6) == idf1, name
        assert (int(row.FP), int(row.FN), int(row.IDs)) == (fp, fn, ids), name


def test_fcm_eval_tracks_origin_zero_is_one_pixel_off(tmp_path):
    from fcm_common.cli.evaluate import main

    data = _motmetrics_data() / "TUD-Campus"
    status, summary = _call(main, [data / "gt.txt", data / "test.txt", "--tracks-origin", "0"])
    assert status == 0
    # read as 0-based, the boxes sit one pixel off the ground truth: the numbers
    row = summary.loc["TUD-Campus"]
    assert (int(row.FP), int(row.FN), int(row.IDs), round(row.MOTA, 4)) == (12, 149, 8, 0.5292)


def _track_with(monkeypatch, rows):
    """fcm-track with its tracker replaced by ``rows`` (and no network)."""
    import fcm_common.cli.track as track_cli

    monkeypatch.setattr(track_cli, "open_network", lambda *a, **k: SimpleNamespace(network_name="a stand-in"))

    def fake_track_source(model, source, *args, **kwargs):
        return SimpleNamespace(rows=list(rows), frames_done=source.length, detections=len(rows))

    monkeypatch.setattr(track_cli, "track_source", fake_track_source)
    return track_cli.main


def test_pets09_excerpt_with_flag_0_rows(tmp_path, monkeypatch):
    # PETS09-S2L1 frames 147..149 (2DMOT2015 layout): id 12 is flagged 0 (not scored) in each
    seq = excerpt("PETS09-S2L1-147", tmp_path / "PETS09-S2L1-147", pictures=True)
    rows = pets09_rows(seq)
    main = _track_with(monkeypatch, rows)
    out = tmp_path / "tracks.txt"
    status, summary = _call(main, [seq, "--weights", "random", "-o", out, "--gt", seq / "gt" / "gt.txt"])
    assert status == 0
    assert read_rows(out) == rows
    row = summary.iloc[0]  # named after seqinfo.ini: PETS09-S2L1
    # scored: 7 + 6 + 6 flag-1 boxes = 19; matched 3 + 3 + 1 (ids 9, 11, 19) = 7
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (19, 3, 12, 1)
    assert row.MOTA == pytest.approx(1 - (12 + 3 + 1) / 19)


def test_mot17_excerpt_with_distractors(tmp_path, monkeypatch):
    # MOT17-02-FRCNN frames 1..2: 22 scored pedestrians per frame, and static persons (class 7),
    # persons on vehicles (2), distractors (8), bicycles (4), occluders (9), all flagged 0
    seq = excerpt("MOT17-02-FRCNN", tmp_path / "MOT17-02-FRCNN", pictures=True)
    rows = mot17_rows(seq)
    main = _track_with(monkeypatch, rows)
    out = tmp_path / "tracks.txt"
    status, summary = _call(main, [seq, "--weights", "random", "-o", out, "--gt", seq / "gt" / "gt.txt"])
    assert status == 0
    row = summary.iloc[0]
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (44, 3, 41, 0)
    assert row.MOTA == pytest.approx(0.0, abs=1e-12)
    # under the framework's TVD rules (same distractor removal, class-1 ground truth): the same
    status, tvd = _call(main, [seq, "--weights", "random", "-o", out, "--eval-mode", "tvd"])
    assert (int(tvd.iloc[0].FP), int(tvd.iloc[0].FN)) == (3, 41)


def test_bad_ground_truth_is_refused_before_tracking(tmp_path, monkeypatch):
    from fcm_common.core.errors import FcmError
    from fcm_common.data.synthetic import write_mot_sequence

    seq = write_mot_sequence(tmp_path / "SYN", num_frames=2, width=64, height=48)
    (seq / "gt" / "gt.txt").write_text("1,1,10,10\n")
    main = _track_with(monkeypatch, [])
    out = tmp_path / "t.txt"
    with pytest.raises(FcmError, match=r"gt.txt:1: 4 comma-separated fields"):
        _call(main, [seq, "--weights", "random", "-o", out])
    assert not out.exists()


def test_scoring_failure_keeps_the_tracks(tmp_path, monkeypatch):
    import fcm_common.evaluation.mot_metrics as mot_metrics
    from fcm_common.core.errors import FcmError
    from fcm_common.data.synthetic import write_mot_sequence

    seq = write_mot_sequence(tmp_path / "SYN", num_frames=2, width=64, height=48)
    rows = [MotRow(1, 1, 1.5, 2.5, 10.0, 20.0), MotRow(2, 1, 2.5, 2.5, 10.0, 20.0)]
    main = _track_with(monkeypatch, rows)

    def broken(*args, **kwargs):
        raise ValueError("something motmetrics did not expect")

    monkeypatch.setattr(mot_metrics, "_accumulate_devkit", broken)
    out = tmp_path / "t.txt"
    with pytest.raises(FcmError, match=r"tracks are complete in .*t.txt"):
        _call(main, [seq, "--weights", "random", "-o", out])
    assert read_rows(out) == rows
