"""Affine nodes read off the bound graph (qnn_plugin.affine_graph)."""
import numpy as np
import pytest
import torch

from qnn_plugin import affine_graph, intnet
from qnn_plugin.errors import NotIntegerError
from qnn_plugin.verifier.network import Network
from tests.verifier.instances import batchnorm_sign_mlp


def _bn_net(tmp_path, seed=0):
    built = batchnorm_sign_mlp(np.random.default_rng(seed))
    path = tmp_path / "bn.onnx"
    path.write_bytes(built.model.SerializeToString())
    return built, Network(str(path), torch.device("cpu"))


def _node(net, kind):
    return next(n for n in net.bounded_module._modules.values() if type(n).__name__ == kind)


def test_batch_normalization_is_its_inference_formula(tmp_path):
    """An inference-mode BatchNormalization node's map is gamma (x - mean) / sqrt(var + eps)
    + beta per channel, whatever its constants are stored as (parameters or buffers)."""
    from onnx import numpy_helper

    built, net = _bn_net(tmp_path)
    affine_graph.evaluate_constants(net.bounded_module)
    parts, offset = affine_graph.local_map(_node(net, "BoundBatchNormalization"))
    (k, K), = parts
    c = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in built.model.graph.initializer}
    scale = c["gamma"] / np.sqrt(c["var"] + 1e-5)
    assert k == 0
    np.testing.assert_allclose(K, np.diag(scale), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(offset, c["beta"] - scale * c["mean"], rtol=1e-6, atol=1e-6)


def test_integer_extraction_refuses_batch_normalization(tmp_path):
    """Its products are not exact in float32: the exact program is not built (the float program
    takes the network, tests/verifier/test_milp.py)."""
    _, net = _bn_net(tmp_path)
    lo = np.zeros(net.n_in, dtype=np.int64)
    with pytest.raises(NotIntegerError):
        intnet.extract(net.bounded_module, net.input_shape, lo, lo + 3)
