"""Every numeric flag of `run` is validated before anything starts: finite, in range, one line (issue 11,
finding 11, in part)."""
import pytest

from edge_qwq.cli import main


@pytest.mark.parametrize("flag, value, words", [
    ("--evidence-budget-mb", "nan", "not a finite number"),
    ("--evidence-budget-mb", "0", "x>0.0"),
    ("--connect-timeout", "nan", "not a finite number"),
    ("--connect-timeout", "-1", "0.0<x"),
    ("--connect-timeout", "inf", "<=3600"),
    ("--threads", "-1", "0<=x<=256"),
    ("--threads", "100000", "0<=x<=256"),
    ("--max-frames", "-5", "x>=0"),
    ("--shadow-rate", "nan", "not a finite number"),
    ("--reuse-threshold", "nan", "not a finite number"),
    ("--tile-overlap", "nan", "not a finite number"),
    ("--frame-threshold", "nan", "not a finite number"),
])
def test_bad_numbers_are_refused_in_one_line(tiny_bundle, tmp_path, capsys, flag, value, words):
    rc = main(["run", "--bundle", str(tiny_bundle), "--source", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and flag in err
