"""The checker (check.py): where onnxruntime with default options and the exact semantics
part, and that they agree on networks whose arithmetic is exact."""
from pathlib import Path

import numpy as np
import torch

from qnn_plugin import onnx_builders as ob
from qnn_plugin.spec import parse_vnnlib
from qnn_plugin.verifier.check import Checker
from qnn_plugin.verifier.network import Network

ORT_REWRITE = Path(__file__).parent / "data" / "ort_rewrite"


def test_disagreement_found_where_onnxruntime_rewrites_the_model():
    net = Network(str(ORT_REWRITE / "qdq_gemm_float_bias.onnx"), torch.device("cpu"))
    case = parse_vnnlib((ORT_REWRITE / "one_point.vnnlib").read_text()).cases[0]
    x = ((case.lower + case.upper) / 2).astype(np.float32)   # in the box's one grid cell
    found = Checker(net).disagreement([np.zeros(2, np.float32), x])
    assert found is not None
    point, diff = found
    assert np.array_equal(point, x) and 0.08 < diff < 0.09   # one output quantum (0.0828)


def test_no_disagreement_on_exact_fixed_point_networks(tmp_path):
    rng = np.random.default_rng(5)
    built = ob.random_fixed_point_mlp(rng, sizes=[4, 7, 5, 3])
    path = tmp_path / "n.onnx"
    path.write_bytes(built.model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    grid = built.grid_values()
    xs = rng.choice(grid, size=(64, 4)).astype(np.float32)
    assert Checker(net).disagreement(xs) is None
