"""`edge-qwq distill --budget`: the shape it chose and why, the report, and one-line refusals."""
import pytest

from edge_qwq.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from export.sample_data import make_sample
    from export.teacher_train import train_teacher

    root = tmp_path_factory.mktemp("distill_cli")
    make_sample(root / "data", size=32, per_class=8, seed=4)
    train_teacher(root / "data", root / "teacher", arch="resnet", epochs=1, show_progress=False)  # full-size ResNet-18
    return root


@pytest.mark.parametrize("args, message", [
    (["--budget", "2"], "lies in (0, 1]"),
    (["--budget", "1.5ms"], "needs --target"),
    (["--budget", "0.00001"], "no student shape fits"),
])
def test_bad_budget_is_one_line_and_writes_nothing(setup, tmp_path, capsys, args, message):
    capsys.readouterr()
    rc = main(["distill", "--teacher", str(setup / "teacher"), "--data", str(setup / "data"),
               "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_distill_prints_the_shape_it_chose_and_the_report(setup, tmp_path, capsys):
    from export.student import load_student

    rc = main(["distill", "--teacher", str(setup / "teacher"), "--data", str(setup / "data"),
               "--out", str(tmp_path / "s"), "--budget", "1", "--epochs", "1", "--depth", "2"])
    err = capsys.readouterr().err  # human output goes to stderr
    words = " ".join(err.split())
    assert rc == 0
    assert "chose" in words and "the largest of" in words  # the budget's choice and why
    assert "shape given by hand (depth)" in words
    assert "MFLOPs" in err and "teacher" in err and "roofline estimate" in words  # the report table
    assert load_student(tmp_path / "s").config.depth == 2
