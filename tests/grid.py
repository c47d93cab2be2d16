"""Input-grid helpers shared by the soundness tests: random boxes over a quantized input and
the finite set of inputs that realises every code such a box can reach."""
import itertools

import numpy as np
import torch


def grid_values(scale, zero_point, qmin, qmax):
    return ((np.arange(qmin, qmax + 1) - zero_point) * scale).astype(np.float32)


def random_grid_box(rng, scale, zero_point, qmin, qmax, input_shape, free=3):
    """A box around a random grid point: up to ``free`` coordinates span a few codes (their ends
    pushed out by less than half a step, or onto a rounding tie), the others are points."""
    dim = int(np.prod(input_shape))
    centre = rng.integers(qmin, qmax + 1, dim)
    lo, hi = centre.copy(), centre.copy()
    chosen = rng.choice(dim, size=min(dim, free), replace=False)
    for i in chosen:
        lo[i] = max(qmin, centre[i] - int(rng.integers(0, 3)))
        hi[i] = min(qmax, centre[i] + int(rng.integers(0, 3)))
    pad = np.zeros(dim)
    pad[chosen] = rng.choice([0.0, 0.49, 0.5, 0.25], len(chosen)) * scale
    lower = ((lo - zero_point) * scale - pad).astype(np.float32)
    upper = ((hi - zero_point) * scale + pad).astype(np.float32)
    shape = (1, *input_shape)
    return torch.tensor(lower).reshape(shape), torch.tensor(upper).reshape(shape)


def reachable_inputs(grid, lower, upper, input_shape):
    """Per coordinate, the box ends and every grid value between them: through a monotone input
    quantizer these realise every code the box reaches, so the outputs on their product are all
    the outputs the box has."""
    axes = []
    for lo, hi in zip(lower.reshape(-1).tolist(), upper.reshape(-1).tolist()):
        inside = grid[(grid >= lo) & (grid <= hi)].tolist()
        axes.append(sorted({lo, hi, *inside}))
    return np.array(list(itertools.product(*axes)), dtype=np.float32).reshape(-1, *input_shape)


def assert_bounds_contain(qp, net, lower, upper, x, methods=("ibp", "crown", "alpha-crown")):
    with torch.no_grad():
        y = net(torch.tensor(x))
    bm = qp.bounded(net, lower)
    for method in methods:
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert torch.all(lb[0] <= y.min(0).values + 1e-4), method
        assert torch.all(ub[0] >= y.max(0).values - 1e-4), method
