"""Export: onnxruntime and load_onnx give exactly the torch model's outputs on grid points."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qnn_plugin as qp
from qnn_plugin.training.export import ExportError, export_onnx
from qnn_plugin.training.layers import QNN, QFormat


def _perturb(model, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _grid_inputs(model, n, seed):
    """Random grid points plus the two extreme corners, as real inputs."""
    f = model.input_format
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(f.qmin, f.qmax + 1, (n,) + model.input_shape, generator=g)
    codes[0], codes[1] = f.qmin, f.qmax
    return ((codes - f.zero_point) * f.scale).float()


def _assert_identical(model, built, x):
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(built.model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_array_equal(out, ref)
    with torch.no_grad():
        back = qp.load_onnx(built.model)(x).numpy()
    np.testing.assert_array_equal(back, ref)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 31 - 1), form=st.sampled_from(["qdq", "fixed_point"]),
       hidden=st.lists(st.integers(1, 12), min_size=0, max_size=2),
       w_bits=st.integers(2, 8), act_frac=st.integers(0, 6), rounding=st.sampled_from(["half_even", "half_up", "floor"]))
def test_mlp_export_is_bit_identical(tmp_path, seed, form, hidden, w_bits, act_frac, rounding):
    if form == "qdq":
        rounding = "half_even"
    act_bits = 8 if form == "qdq" else int(np.random.default_rng(seed).integers(2, 9))
    torch.manual_seed(seed)
    m = QNN.mlp(7, hidden, 4, in_fmt=QFormat.fixed(8, 8, False),
                w_fmt=QFormat.fixed(w_bits, w_bits - 1, True),
                act_fmt=QFormat.fixed(act_bits, act_frac, False), rounding=rounding)
    _perturb(m, seed, 0.5)
    built = export_onnx(m, tmp_path / "m.onnx", form)
    assert (tmp_path / "m.onnx").read_bytes() == built.model.SerializeToString()
    assert built.info["exact_float32"]
    _assert_identical(m, built, _grid_inputs(m, 400, seed))


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 31 - 1), channels=st.lists(st.integers(1, 4), min_size=1, max_size=2))
def test_conv_export_is_bit_identical(seed, channels):
    torch.manual_seed(seed)
    m = QNN.conv((2, 7, 7), channels, [5], 3, in_fmt=QFormat.fixed(8, 8, False),
                 w_fmt=QFormat.fixed(8, 7, True), act_fmt=QFormat.fixed(8, 4, False))
    _perturb(m, seed, 0.3)
    _assert_identical(m, export_onnx(m, None, "qdq"), _grid_inputs(m, 200, seed))


def test_general_scale_and_int8_input_export_to_qdq():
    """General (non-power-of-two) formats are an option of the layers and of QDQ export."""
    torch.manual_seed(1)
    m = QNN.mlp(5, [6], 3, in_fmt=QFormat(2.0 ** -7, 0, -128, 127),
                w_fmt=QFormat.fixed(8, 7, True), act_fmt=QFormat.fixed(8, 4, False))
    _assert_identical(m, export_onnx(m, None, "qdq"), _grid_inputs(m, 300, 1))
    g = QNN.mlp(5, [6], 3, in_fmt=QFormat(1 / 255, 0, 0, 255), w_fmt=QFormat.fixed(8, 7, True),
                act_fmt=QFormat(0.1, 0, 0, 255))
    built = export_onnx(g, None, "qdq")   # exported; exactness is not promised (float32 order)
    assert not built.info["builder"] == "fixed_point_mlp"


@pytest.mark.parametrize("kwargs,form,match", [
    (dict(rounding="half_up"), "qdq", "half_even"),
    (dict(act_fmt=QFormat.fixed(6, 3, False)), "qdq", "8-bit unsigned activations"),
    (dict(w_fmt=QFormat.fixed(10, 8, True)), "qdq", "int8"),
    (dict(in_fmt=QFormat.fixed(6, 6, False)), "qdq", "8-bit input"),
    (dict(act_fmt=QFormat(0.1, 0, 0, 255)), "fixed_point", "power-of-two"),
    (dict(in_fmt=QFormat.fixed(8, 8, True)), "fixed_point", "unsigned"),
])
def test_unsupported_exports_are_refused(kwargs, form, match):
    args = dict(in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(8, 7, True),
                act_fmt=QFormat.fixed(8, 5, False), rounding="half_even")
    args.update(kwargs)
    m = QNN.mlp(4, [3], 2, **args)
    with pytest.raises(ExportError, match=match):
        export_onnx(m, None, form)


def test_conv_fixed_point_and_unknown_form_are_refused():
    m = QNN.conv((1, 4, 4), [2], [], 2, in_fmt=QFormat.fixed(8, 8, False),
                 w_fmt=QFormat.fixed(8, 7, True), act_fmt=QFormat.fixed(8, 5, False))
    with pytest.raises(ExportError, match="form='qdq'"):
        export_onnx(m, None, "fixed_point")
    with pytest.raises(ExportError, match="unknown export form"):
        export_onnx(m, None, "qoperator")
