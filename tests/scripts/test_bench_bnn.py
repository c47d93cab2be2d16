"""The binarized-network benchmark: its exported network is the trained one, and the script
runs end to end."""
import importlib.util

import numpy as np
import onnxruntime as ort
import pytest

from tests.shared_data import SHARED

from . import ROOT, run_script

SCRIPT = "bench_bnn.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_bnn", ROOT / "scripts" / SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_exported_bnn_predicts_as_the_trained_one():
    """Batch normalisation folded into each Sign's bias (weights flipped where its scale is
    negative), output biases rounded to 1/4096: onnxruntime's labels are the trained network's
    on all but a few inputs (ties the rounding moves)."""
    from sklearn.datasets import load_digits

    from qnn_plugin import onnx_builders as ob

    digits = load_digits()
    x = np.round(digits.data * 255 / 16).astype(np.int64)
    ws, bs, predict = _bench().train_bnn(x[:600], digits.target[:600], [16], epochs=3)
    assert all(set(np.unique(w)) <= {-1.0, 1.0} for w in ws)
    built = ob.sign_mlp(ws, bs, input_scale=2.0 ** -8)
    sess = ort.InferenceSession(built.model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: (x / 256).astype(np.float32)})[0].argmax(1)
    assert np.mean(got == predict(x)) >= 0.97


@pytest.mark.skipif(SHARED is None, reason="the shared MNIST test set is not available")
def test_the_script_prints_a_row_per_eps(tmp_path):
    out = run_script(SCRIPT, "--samples", "2", "--eps", "1", "--timeout", "10", "--hidden", "32",
                     "--save-model", tmp_path / "bnn.onnx")
    assert out.returncode == 0, out.stderr[-2000:]
    row = [ln for ln in out.stdout.splitlines() if ln.startswith("| 1 | program |")]
    assert len(row) == 1, out.stdout
    cells = [c.strip() for c in row[0].split("|")[1:-1]]
    assert sum(int(c) for c in cells[2:6]) == 2
    assert (tmp_path / "bnn.onnx").is_file()


@pytest.mark.skipif(SHARED is None, reason="the shared MNIST test set is not available")
def test_float_input_and_the_folder_for_the_program_benchmark(tmp_path):
    """--float-input: the same network without an input quantizer, verified on a continuous
    box; --write-folder: the instances as a VNN-COMP folder that bench_intprog.py reads."""
    import onnx

    out = run_script(SCRIPT, "--samples", "1", "--eps", "1", "--timeout", "10", "--hidden", "32",
                     "--float-input", "--save-model", tmp_path / "bnn.onnx")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "float input" in out.stdout and "| 1 | program |" in out.stdout, out.stdout
    ops = {n.op_type for n in onnx.load(tmp_path / "bnn.onnx").graph.node}
    assert "Sign" in ops and "QuantizeLinear" not in ops

    folder = tmp_path / "bnnf"
    out = run_script(SCRIPT, "--samples", "2", "--eps", "1,2", "--hidden", "32",
                     "--write-folder", folder)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (folder / "onnx" / "bnn_mnist.onnx").is_file()
    assert len((folder / "instances.csv").read_text().splitlines()) == 4
    out = run_script("bench_intprog.py", folder, "--compare", "union", "--timeout", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| instance | one by one |" in out.stdout, out.stdout
