import numpy as np
import pytest

from fcm_common.data.mot_format import MotRow
from fcm_common.evaluation.mot_metrics import EvaluationError, accumulate, load_ground_truth, summarize


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


@pytest.mark.parametrize("mode", ["tvd", "hieve"])
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
    with pytest.raises(EvaluationError, match="ground truth not found"):
        load_ground_truth(tmp_path / "none.txt")
    with pytest.raises(EvaluationError, match="unknown evaluation mode"):
        load_ground_truth(tmp_path / "none.txt", mode="mot17")
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        summarize([], [])
