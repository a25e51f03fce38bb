import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from fcm_common.evaluation.bdrate import BDRateError, bd_rate

RATES = [100.0, 200.0, 400.0, 800.0]
MOTA = [50.0, 60.0, 66.0, 70.0]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_identical_curves_give_zero(method):
    assert bd_rate(RATES, MOTA, RATES, MOTA, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_half_the_rate_everywhere_gives_minus_50_percent(method):
    assert bd_rate(RATES, MOTA, [r / 2 for r in RATES], MOTA, method) == pytest.approx(-0.5, abs=1e-12)
    assert bd_rate(RATES, MOTA, [r * 2 for r in RATES], MOTA, method) == pytest.approx(1.0, abs=1e-12)


def test_only_the_overlapping_accuracy_interval_counts():
    # two points per curve: PCHIP is linear in between. The anchor covers MOTA 40..80, the test 60..120,
    # so the log-rate gap is averaged over 60..80 only, where it is linear in MOTA.
    def gap(m):
        test = np.log10(50) + (np.log10(5000) - np.log10(50)) * (m - 60) / 60
        anchor = 2 + (m - 40) / 40
        return test - anchor

    expected = 10 ** ((gap(60) + gap(80)) / 2) - 1
    got = bd_rate([100, 1000], [40, 80], [50, 5000], [60, 120])
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(-0.8085, abs=1e-4)


def test_hand_computed_piecewise_linear_case():
    # two points per curve: PCHIP is linear between them; log-rate gap goes from log10(1/2) to log10(1)
    # linearly over the interval, so the mean gap is log10(0.5)/2 and BD-rate = 10**(log10(0.5)/2) - 1
    got = bd_rate([100, 1000], [40, 80], [50, 1000], [40, 80])
    assert got == pytest.approx(10 ** (np.log10(0.5) / 2) - 1, abs=1e-12)


def test_unusable_curves():
    with pytest.raises(BDRateError, match="do not overlap"):
        bd_rate(RATES, MOTA, RATES, [m + 100 for m in MOTA])
    with pytest.raises(BDRateError, match="same accuracy"):
        bd_rate(RATES, [50, 50, 60, 70], RATES, MOTA)
    with pytest.raises(BDRateError, match="at least 4 points"):
        bd_rate(RATES[:3], MOTA[:3], RATES[:3], MOTA[:3], "cubic")
    with pytest.raises(BDRateError, match="positive"):
        bd_rate([0, 1], [1, 2], [1, 2], [1, 2])


def _csv(path, rows):
    path.write_text("name,kind,kbps,mota\n" + "".join(f"{n},{k},{r},{m}\n" for n, k, r, m in rows))
    return path


@pytest.mark.slow
def test_cli_prints_bd_rates_and_draws_curves(tmp_path):
    anchor = _csv(tmp_path / "anchor.csv", [("S1", "sequence", r, m) for r, m in zip(RATES, MOTA)]
                  + [("C", "class", r, m) for r, m in zip(RATES, MOTA)])
    test = _csv(tmp_path / "test.csv", [("S1", "sequence", r / 2, m) for r, m in zip(RATES, MOTA)]
                + [("C", "class", r / 4, m) for r, m in zip(RATES, MOTA)])
    png = tmp_path / "rd.png"
    result = run_cli("fcm-bdrate", anchor, test, "--plot", png)
    assert result.returncode == 0, result.stderr
    assert "-50.00%" in result.stdout and "-75.00%" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(run_cli("fcm-bdrate", anchor, tmp_path / "none.csv"), "file not found")
    (tmp_path / "bad.csv").write_text("name,rate\nx,1\n")
    assert_one_line_error(run_cli("fcm-bdrate", anchor, tmp_path / "bad.csv"), "missing column")


def test_dominated_points_are_found():
    from fcm_common.evaluation.bdrate import efficient_points

    # the alt1 anchor of the study: QP 2 costs more than QP 7 for the same MOTA
    rates = [1146.3, 734.0, 460.2, 267.7, 138.7, 65.3]
    motas = [80.99, 80.99, 80.50, 77.85, 63.31, 11.90]
    assert efficient_points(rates, motas) == [1, 2, 3, 4, 5]
    # a point less accurate than a cheaper one is dominated too
    assert efficient_points([1, 2, 3, 4], [10, 30, 20, 40]) == [0, 1, 3]
    kept = efficient_points(rates, motas)
    # with the dominated point the curve is flat and cannot be integrated; without it, the same curve
    # at half the rate is -50 %
    with pytest.raises(BDRateError, match="same accuracy"):
        bd_rate(rates, motas, [r / 2 for r in rates], motas)
    got = bd_rate([rates[i] for i in kept], [motas[i] for i in kept], [r / 2 for r in rates[1:]], motas[1:])
    assert got == pytest.approx(-0.5, abs=1e-12)


def test_a_bd_rate_comes_with_the_accuracy_range_it_covers():
    from fcm_common.evaluation.bdrate import bd_rate_range

    result = bd_rate_range([100, 200, 400, 800], [0.2, 0.4, 0.6, 0.7], [50, 100, 200, 400], [0.3, 0.5, 0.65, 0.8])
    assert (result.lo, result.hi) == (0.3, 0.7)  # the overlap of 0.2..0.7 and 0.3..0.8
    assert result.value < 0
    assert result.describe().endswith("over MOTA 30.0..70.0%")
