"""Problem set-up (qnn_plugin.verifier.problem): polytopes that no output vector reaches."""
import numpy as np
import pytest
import torch

from qnn_plugin.spec import Case, Polytope
from qnn_plugin.verifier.problem import Problem, _empty_in_output_space


@pytest.mark.parametrize("A, b, empty", [
    ([[-1.0, 0.0], [1.0, 0.0]], [-1.0, 0.0], True),                 # y0 >= 1 and y0 <= 0
    ([[-1.0, 0.0], [1.0, 0.0]], [-1.0, 1.0], False),                # y0 == 1: one point
    ([[-1.0, 0.5], [1.0, 0.0], [0.0, -1.0]], [-1.0, 1.0, 0.5], False),
    ([[0.0, 1.0], [0.0, -1.0]], [-1.0, 0.5], True),                 # y1 <= -1 and y1 >= -0.5
    ([[1.0, -1.0], [-1.0, 1.0]], [0.0, -1e-9], False),              # within the LP's slack: kept
    ([[1.0, 1.0]], [-5.0], False),                                  # one row: never empty
])
def test_empty_polytopes(A, b, empty):
    assert _empty_in_output_space(Polytope(np.array(A), np.array(b))) is empty


def test_an_empty_polytope_becomes_a_row_refuted_everywhere():
    case = Case(np.zeros(2), np.ones(2), (Polytope(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([-1.0, 0.0])),
                                           Polytope(np.array([[1.0, 0.0]]), np.array([0.5]))))
    problem = Problem.from_case(case, 0, torch.device("cpu"))
    assert problem.A64.tolist() == [[0.0, 0.0], [1.0, 0.0]] and problem.b64.tolist() == [-1.0, 0.5]
    assert problem.poly.tolist() == [0, 1]
