"""qnn-train end to end: a short run writes an ONNX model that onnxruntime runs exactly like the
trained torch model, a JSON record, and a model qnn-verify can verify."""
import json

import numpy as np
import pytest

from qnn_plugin.cli_train import main


def test_short_run_writes_model_and_record(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code = main(["--epochs", "2", "--n-train", "300", "--n-test", "100", "--hidden", "16",
                 "--eps", "4", "--out", str(out), "--no-progress", "--eval-eps", "1,4"])
    assert code == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["onnx"]["onnxruntime_mismatches"] == 0 and rec["onnx"]["checked_inputs"] == 100
    assert rec["onnx"]["exact_float32"] and rec["onnx"]["form"] == "qdq"
    assert rec["dataset"]["n_train"] == 300 and rec["dataset"]["input_shape"] == [1, 8, 8]
    assert len(rec["history"]) == 2 and rec["training"]["kind"] == "QA-IBP"
    assert set(rec["final_test"]) == {"acc", "ibp_cert@1px", "ibp_cert@4px"}
    assert rec["final_test"]["ibp_cert@1px"] >= rec["final_test"]["ibp_cert@4px"]
    err = capsys.readouterr().err
    assert "wrote" in err and str(out) in err


def test_trained_model_verifies(tmp_path):
    """The exported model with a robustness property of one evaluation sample: the verifier's
    verdict agrees with exhaustive enumeration of the 3**k grid points (k free pixels)."""
    import onnxruntime as ort

    from qnn_plugin.benchmarks import robustness_vnnlib
    from qnn_plugin.training.data import load_dataset
    from qnn_plugin.verifier import verify

    out = tmp_path / "m.onnx"
    assert main(["--epochs", "2", "--n-train", "300", "--n-test", "50", "--hidden", "16",
                 "--form", "fixed_point", "--out", str(out), "--no-progress"]) == 0
    ds = load_dataset("digits")
    px, label = ds.x_test[0].reshape(-1).astype(np.int64), int(ds.y_test[0])
    # a box free in 8 pixels (eps 1 there), fixed elsewhere: 3**8 grid points to enumerate
    text = robustness_vnnlib(px, label, 10, 1)
    free = set(range(20, 28))
    lines = []
    for line in text.splitlines():
        if line.startswith("(assert (") and "X_" in line:
            i = int(line.split("X_")[1].split()[0])
            if i not in free:
                op = line.split()[1][1:]
                line = f"(assert ({op} X_{i} {float(px[i]) / 256!r}))"
        lines.append(line)
    (tmp_path / "p.vnnlib").write_text("\n".join(lines))
    res = verify(str(out), str(tmp_path / "p.vnnlib"), timeout=60)
    sess = ort.InferenceSession(str(out))
    grid = np.array(np.meshgrid(*[[-1, 0, 1]] * 8, indexing="ij")).reshape(8, -1).T
    x = np.repeat(px[None], len(grid), axis=0)
    x[:, sorted(free)] = np.clip(x[:, sorted(free)] + grid, 0, 255)
    y = sess.run(None, {sess.get_inputs()[0].name: (x / 256).astype(np.float32)})[0]
    others = np.delete(y, label, axis=1)
    truth_sat = bool((others >= y[:, [label]]).any())
    assert res.verdict == ("sat" if truth_sat else "unsat"), (res.verdict, res.message)


@pytest.mark.parametrize("args,match", [
    (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
    (["--form", "qdq", "--rounding", "half_up"], "half_even"),
    (["--epochs", "0"], "positive"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, args, match):
    code = main(args + ["--out", str(tmp_path / "m.onnx"), "--no-progress", "--n-train", "50",
                        "--n-test", "20", "--epochs", "1"] if "--epochs" not in args else
                args + ["--out", str(tmp_path / "m.onnx"), "--no-progress"])
    assert code == 2
    assert match in capsys.readouterr().err
