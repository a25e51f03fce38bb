import os
from pathlib import Path

import numpy as np
import pytest

from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import MotRow, read_rows
from fcm_common.evaluation.mot_metrics import (
    EvaluationError,
    SequenceResult,
    accumulate,
    detect_mode,
    evaluate,
    load_ground_truth,
    prepare,
    summarize,
)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture()
def gt(tmp_path):
    # MOTChallenge gt is one-based: motmetrics' mot15-2D shifts x, y by -1 on load
    return _write(
        tmp_path / "gt.txt",
        ["1,1,11,11,10,20,1,1,1", "1,2,51,51,10,20,1,1,1", "2,1,12,11,10,20,1,1,1", "2,2,51,51,10,20,1,1,1", "3,1,13,11,10,20,1,1,1"],
    )


PRED = [
    MotRow(1, 7, 10, 10, 10, 20),  # = gt 1 after the shift
    MotRow(2, 7, 11, 10, 10, 20),
    MotRow(2, 9, 50, 50, 10, 20),  # = gt 2
    MotRow(3, 8, 12, 10, 10, 20),  # gt 1 again, new id: one switch
    MotRow(3, 5, 100, 100, 10, 10),  # false positive
]


@pytest.mark.parametrize("mode", ["tvd", "hieve", "mot"])
def test_metrics_on_a_hand_made_ground_truth(gt, mode):
    summary = summarize([accumulate(gt, PRED, mode)], ["seq"])
    row = summary.loc["seq"]
    # GT 5, FN 1 (gt 2 on frame 1), FP 1, IDs 1 -> MOTA = 1 - 3/5
    assert (row.GT, row.FN, row.FP, row.IDs) == (5, 1, 1, 1)
    assert row.MOTA == pytest.approx(0.4)
    assert row.MOTP == pytest.approx(0.0, abs=1e-9)  # boxes coincide after the -1 shift
    # IDF1: best id mapping covers 3 of 5 gt boxes and 3 of 5 predictions
    assert row.IDF1 == pytest.approx(0.6)
    assert summary.loc["OVERALL"].MOTA == pytest.approx(0.4)


def test_the_one_pixel_shift_matters(gt):
    # predictions copied from the file (unshifted) lose IoU: 10x20 boxes offset by (1, 1)
    pred = [MotRow(1, 1, 11, 11, 10, 20), MotRow(1, 2, 51, 51, 10, 20)]
    row = summarize([accumulate(gt, pred, "hieve")], ["s"]).loc["s"]
    iou = (9 * 19) / (2 * 200 - 9 * 19)
    assert row.MOTP == pytest.approx(1 - iou)


def test_pooling_sums_events_instead_of_averaging(tmp_path):
    gt_a = _write(tmp_path / "a.txt", ["1,1,1,1,10,10,1,1,1", "1,2,31,1,10,10,1,1,1", "1,3,61,1,10,10,1,1,1"])
    gt_b = _write(tmp_path / "b.txt", ["1,1,1,1,10,10,1,1,1", "1,2,31,1,10,10,1,1,1"])
    acc_a = accumulate(gt_a, [MotRow(1, 1, 0, 0, 10, 10), MotRow(1, 2, 30, 0, 10, 10)], "hieve")  # MOTA 2/3
    acc_b = accumulate(gt_b, [], "hieve")  # MOTA 0
    summary = summarize([acc_a, acc_b], ["a", "b"])
    assert summary.loc["a"].MOTA == pytest.approx(2 / 3)
    assert summary.loc["b"].MOTA == pytest.approx(0.0)
    assert summary.loc["OVERALL"].MOTA == pytest.approx(0.4)  # 1 - 3/5, not the mean 1/3


def test_tvd_rules_drop_predictions_on_distractors_and_score_class_1(tmp_path):
    gt = _write(
        tmp_path / "gt.txt",
        [
            "1,1,1,1,10,20,1,1,1",
            "1,2,41,1,10,20,1,7,1",  # static person: a distractor
            "1,3,81,1,10,20,0,1,1",  # confidence 0: not scored
        ],
    )
    seqinfo = _write(tmp_path / "seqinfo.ini", ["[Sequence]", "seqLength=1"])
    pred = [MotRow(1, 1, 0, 0, 10, 20), MotRow(1, 2, 40, 0, 10, 20), MotRow(1, 3, 80, 0, 10, 20)]
    tvd = summarize([accumulate(gt, pred, "tvd", seqinfo)], ["s"]).loc["s"]
    # prediction 2 is removed; prediction 3 has no scored ground truth left: a false positive
    assert (tvd.GT, tvd.FP, tvd.FN) == (1, 1, 0)
    hieve = summarize([accumulate(gt, pred, "hieve")], ["s"]).loc["s"]
    # HiEve rules: no class filter, ground truth with confidence >= 1 only
    assert (hieve.GT, hieve.FP, hieve.FN) == (2, 1, 0)


def test_numpy2_shim_lets_motmetrics_compute_iou():
    import motmetrics as mm

    assert hasattr(np, "asfarray")
    d = mm.distances.iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [2, 0, 10, 10], [5, 0, 10, 10]], max_iou=0.5)
    assert d[0, 0] == pytest.approx(0.0) and d[0, 1] == pytest.approx(1 / 3) and np.isnan(d[0, 2])


def test_bad_inputs(tmp_path):
    with pytest.raises(FcmError, match="ground truth not found"):
        load_ground_truth(tmp_path / "none.txt")
    with pytest.raises(EvaluationError, match="unknown evaluation mode"):
        load_ground_truth(tmp_path / "none.txt", mode="mot17")
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        summarize([], [])


def _tud(name):
    import motmetrics as mm

    folder = Path(os.path.dirname(mm.__file__)) / "data" / name
    return folder / "gt.txt", read_rows(folder / "test.txt")  # MOTChallenge result files are 1-based


# The MOTChallenge devkit's values for the result files that ship with motmetrics, as motmetrics'
# own test suite records them (test_metrics.py::test_motchallenge_files).
DEVKIT_TUD = {
    #                 MOTA      MOTP      IDF1   FP   FN  IDs
    "TUD-Campus": (0.526462, 0.277201, 0.557659, 13, 150, 7),
    "TUD-Stadtmitte": (0.564014, 0.345904, 0.644619, 45, 452, 7),
    "OVERALL": (0.555116, 0.330177, 0.624296, 58, 602, 14),
}


@pytest.mark.parametrize("mode", ["auto", "mot", "hieve"])
def test_devkit_values_on_the_tud_files(mode):
    items = [SequenceResult(name, *_tud(name), mode=mode) for name in ("TUD-Campus", "TUD-Stadtmitte")]
    summary = evaluate(items)
    for name, (mota, motp, idf1, fp, fn, ids) in DEVKIT_TUD.items():
        row = summary.loc[name]
        assert (row.MOTA, row.MOTP, row.IDF1) == pytest.approx((mota, motp, idf1), abs=5e-7), name
        assert (row.FP, row.FN, row.IDs) == (fp, fn, ids), name


def _tie_case(tmp_path):
    # frame 1: two identical ground-truth boxes, two identical predictions (a cost tie);
    # frame 2: the two people apart, each prediction on its own person
    gt = _write(tmp_path / "gt.txt", ["1,1,11,11,10,20,1,1,1", "1,2,11,11,10,20,1,1,1",
                                      "2,1,11,11,10,20,1,1,1", "2,2,101,11,10,20,1,1,1"])
    rows = [MotRow(1, 1, 10, 10, 10, 20), MotRow(1, 2, 10, 10, 10, 20),
            MotRow(2, 1, 10, 10, 10, 20), MotRow(2, 2, 100, 10, 10, 20)]
    return gt, rows


def test_solvers_on_a_tie_are_the_frameworks(tmp_path):
    gt, rows = _tie_case(tmp_path)
    # TVD: lapjv pairs the tie crosswise, frame 2 then switches both ids (as MPEG scores it)
    tvd = evaluate([SequenceResult("s", gt, rows, mode="tvd")])
    assert (tvd.loc["s"].IDs, tvd.loc["s"].MOTA) == (2, 0.5)
    # HiEve: munkres pairs it straight for the sequence; the pooled class row uses lap, as the
    # framework's class script does
    hieve = evaluate([SequenceResult("s", gt, rows, mode="hieve")])
    assert (hieve.loc["s"].IDs, hieve.loc["s"].MOTA) == (0, 1.0)
    assert (hieve.loc["OVERALL"].IDs, hieve.loc["OVERALL"].MOTA) == (2, 0.5)
    # MOTChallenge devkit: ties go to the lowest ids first
    mot = evaluate([SequenceResult("s", gt, rows, mode="mot")])
    assert (mot.loc["s"].IDs, mot.loc["OVERALL"].IDs) == (0, 0)


def test_mot_rules_mot16_layout(tmp_path):
    gt = _write(tmp_path / "gt.txt", [
        "1,1,1,1,10,20,1,1,1",      # pedestrian
        "1,2,41,1,10,20,0,7,1",     # static person (distractor): an ignore region
        "1,3,81,1,10,20,0,3,1",     # car: not scored, not ignored
        "1,4,121,1,10,20,1,1,-1",   # pedestrian of unknown visibility: ignored by the devkit too
        "1,5,161,1,10,20,0,1,1",    # pedestrian with flag 0: not scored
        "2,1,1,1,10,20,1,1,1",
    ])
    pred = [MotRow(1, 1, 0, 0, 10, 20), MotRow(1, 2, 40, 0, 10, 20), MotRow(1, 3, 80, 0, 10, 20),
            MotRow(1, 4, 120, 0, 10, 20), MotRow(1, 5, 160, 0, 10, 20),
            MotRow(3, 1, 0, 0, 10, 20)]  # after the last ground-truth frame: dropped
    row = evaluate([SequenceResult("s", gt, pred, mode="mot")]).loc["s"]
    # scored: id 1 (frames 1, 2) and id 4; predictions 2 and 4 removed (so id 4 is missed, as in the
    # devkit), id 1 is missed in frame 2; predictions 3 (car) and 5 (flag 0) are false positives
    assert (row.GT, row.FP, row.FN, row.IDs) == (3, 2, 2, 0)


def test_mot_rules_mot15_layout_count_every_flag_1_row(tmp_path):
    gt = _write(tmp_path / "gt.txt", ["1,1,1,1,10,20,1,-1,-1,-1", "1,2,41,1,10,20,0,-1,-1,-1", "1,3,81,1,10,20,1,-4.2,3,0"])
    pred = [MotRow(1, 1, 0, 0, 10, 20), MotRow(1, 2, 40, 0, 10, 20)]
    row = evaluate([SequenceResult("s", gt, pred)]).loc["s"]
    # no classes, nothing is removed: the prediction on the flag-0 person is a false positive
    assert (row.GT, row.FP, row.FN) == (2, 1, 1)


def test_a_switch_needs_the_object_in_the_previous_frame(tmp_path):
    # id 1 is annotated in frames 1 and 3 only: the devkit counts no switch when its tracker id changes
    gt = _write(tmp_path / "gt.txt", ["1,1,1,1,10,20,1,1,1", "3,1,1,1,10,20,1,1,1", "2,2,51,1,10,20,1,1,1",
                                      "4,1,1,1,10,20,1,1,1"])
    pred = [MotRow(1, 7, 0, 0, 10, 20), MotRow(3, 8, 0, 0, 10, 20), MotRow(4, 9, 0, 0, 10, 20)]
    mot = evaluate([SequenceResult("s", gt, pred, mode="mot")]).loc["s"]
    assert mot.IDs == 1  # frame 4 only
    hieve = evaluate([SequenceResult("s", gt, pred, mode="hieve")]).loc["s"]
    assert hieve.IDs == 2  # motmetrics' own rule, which the framework uses


def test_modes_picked_from_the_ground_truth(tmp_path):
    line = ["1,1,1,1,10,20,1,1,1"]
    for folder, mode in [("tvd_tracking/TVD-01/gt", "tvd"), ("HiEve_pngs/13/gt", "hieve"),
                         ("MOT17/train/MOT17-02-FRCNN/gt", "mot"), ("data/PETS09-S2L1/gt", "mot")]:
        (tmp_path / folder).mkdir(parents=True)
        gt = _write(tmp_path / folder / "gt.txt", line)
        assert detect_mode(gt) == mode and prepare(gt).mode == mode
    gt15 = _write(tmp_path / "tvd_tracking" / "TVD-01" / "gt" / "gt15.txt", ["1,1,1,1,10,20,1,-4.2,3,0"])
    with pytest.raises(EvaluationError, match="TVD rules read the class"):
        prepare(gt15)


def test_bad_seqinfo_is_named(tmp_path):
    gt = _write(tmp_path / "gt.txt", ["1,1,1,1,10,20,1,1,1"])
    ini = _write(tmp_path / "seqinfo.ini", ["[Sequence]", "name=x", "seqLength=two"])
    with pytest.raises(EvaluationError, match=r"seqinfo.ini:3: seqLength=two is not a positive integer"):
        accumulate(gt, [], "tvd", ini)


def test_motmetrics_failures_name_the_sequence(tmp_path, monkeypatch):
    import motmetrics as mm

    gt = _write(tmp_path / "gt.txt", ["1,1,1,1,10,20,1,1,1"])

    def boom(*args, **kwargs):
        raise KeyError(-4.1744)

    monkeypatch.setattr(mm.utils, "CLEAR_MOT_M", boom)
    with pytest.raises(EvaluationError, match=r"scoring .*gt.txt with the tvd rules failed \(KeyError"):
        accumulate(gt, [MotRow(1, 1, 0, 0, 10, 20)], "tvd")


def test_devkit_matching_is_a_min_cost_matching():
    from scipy.optimize import linear_sum_assignment

    from fcm_common.evaluation.devkit import min_cost_matching

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 5, 8):
        for _ in range(20):
            cost = rng.random((n, n))
            cost[rng.random((n, n)) < 0.3] = 1e9  # no edge, as the devkit marks it
            left = min_cost_matching(cost.tolist())
            assert sorted(left) == list(range(n))
            r, c = linear_sum_assignment(cost)
            assert cost[np.arange(n), left].sum() == pytest.approx(cost[r, c].sum())
    # a full tie (with the devkit's 1e-9 per candidate pair) pairs the lowest ids first
    assert min_cost_matching([[0.0, 1e-9], [2e-9, 3e-9]]) == [0, 1]
