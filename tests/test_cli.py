"""qnn-bound: runs end to end, and reports bad input with exit code 2."""
from qnn_plugin.cli import bound_main


def test_demo_runs_and_bounds_are_sound(capsys):
    assert bound_main(["--methods", "ibp,crown", "--boxes", "2", "--samples", "16"]) == 0
    out = capsys.readouterr().out
    assert "crown" in out and "NO" not in out


def test_missing_model_file(capsys):
    assert bound_main(["/nonexistent/model.onnx"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_method(capsys):
    assert bound_main(["--methods", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
