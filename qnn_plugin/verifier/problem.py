"""One case of a VNN-LIB property as tensors: the input box and the unsafe set's rows.

The unsafe set is a disjunction of polytopes {y : A_p y <= b_p}. All rows of all polytopes are
stacked into one matrix C (so a single bound computation serves every polytope), and the
*margin* of an output y is

    margin(y) = min_p max_r (C_r y - b_r)   over the rows r of polytope p,

so margin(y) <= 0 exactly when y is unsafe, and a box is safe when, for every polytope, some
row's lower bound exceeds its b (strictly: the unsafe set is closed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

_NEG = -float("inf")


def float32_box(lower: np.ndarray, upper: np.ndarray, inward: bool):
    """The float32 box of a float64 box: ``inward`` keeps only float32 values inside it (where
    counterexamples must come from); otherwise the ends rounded to nearest, the float32 values
    a real input of the box rounds to (as numpy, onnxruntime's feeds and the VNN-COMP checker
    round a float64 to float32), the set to prove safe. It holds the inward box: rounding to
    nearest is monotone and keeps a float32. (It was rounded outward, a float32 further than
    any real of the box rounds to: an audit's box whose end sat 7e-7 input codes below a tie
    of the input quantizer reached the next code that way and got ``unknown`` for ``unsat``.)"""
    lo32, hi32 = lower.astype(np.float32), upper.astype(np.float32)
    if inward:
        lo32 = np.where(lo32.astype(np.float64) < lower, np.nextafter(lo32, np.float32(np.inf)), lo32)
        hi32 = np.where(hi32.astype(np.float64) > upper, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return lo32, hi32


@dataclass
class Problem:
    """A case of a spec on a device: boxes (outer: to prove; inner: for counterexamples),
    the stacked rows C (R, n_out) and b (R,), and each row's polytope index."""

    lower: Tensor        # (n_in,) float32, rounded to nearest (every real of the box's float32)
    upper: Tensor
    inner_lower: Tensor  # (n_in,) float32, inward-rounded (may be empty: lower > upper)
    inner_upper: Tensor
    C: Tensor            # (R, n_out) float32
    b: Tensor            # (R,) float32 (rounded up: a superset of the unsafe set)
    poly: Tensor         # (R,) int64
    n_poly: int
    A64: np.ndarray      # (R, n_out) the spec's rows, float64 (for exact checks)
    b64: np.ndarray      # (R,)
    case_index: int = 0
    # C differs from A64 where a coefficient is not a float32: (R,) |A64 - C| summed per row,
    # times a bound on |y| (set by the verifier), is added to the proof threshold
    slack: Optional[Tensor] = None
    _y_abs_max: Optional[float] = None
    _out_err: Optional[np.ndarray] = None   # (R,) see set_output_error

    @classmethod
    def from_case(cls, case, index: int, device) -> "Problem":
        lo, hi = float32_box(case.lower, case.upper, inward=False)
        ilo, ihi = float32_box(case.lower, case.upper, inward=True)
        # no float32 strictly inside (e.g. lower == upper == 0.1): the nearest float32 stands in
        empty = ilo > ihi
        ilo = np.where(empty, case.lower.astype(np.float32), ilo)
        ihi = np.where(empty, case.lower.astype(np.float32), ihi)
        # a polytope no output reaches keeps its place as the row 0 <= -1: refuted everywhere
        unsafe = [(np.zeros((1, p.A.shape[1])), np.array([-1.0])) if _empty_in_output_space(p)
                  else (p.A, p.b) for p in case.unsafe]
        rows = [A for A, _ in unsafe]
        C = np.concatenate(rows, 0) if rows else np.zeros((0, 0))
        b = np.concatenate([b_ for _, b_ in unsafe], 0) if rows else np.zeros(0)
        poly = np.concatenate([np.full(len(b_), i) for i, (_, b_) in enumerate(unsafe)]) if rows else np.zeros(0)
        b32 = b.astype(np.float32)
        b32 = np.where(b32.astype(np.float64) < b, np.nextafter(b32, np.float32(np.inf)), b32)
        t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)
        return cls(t(lo), t(hi), t(ilo), t(ihi), t(C), t(b32), t(poly, torch.int64),
                   len(case.unsafe), C.astype(np.float64), b.astype(np.float64), index)

    @property
    def coefficient_error(self) -> np.ndarray:
        """(R,) sum_j |A64 - float32(A64)|: zero unless a coefficient is not a float32."""
        return np.abs(self.A64 - self.C.double().cpu().numpy()).sum(axis=1)

    def set_output_bound(self, y_abs_max: float) -> None:
        """Widen the proof threshold, given max |y_j| over the whole box, by (1) the error of
        coefficients that are not float32 numbers and (2) 2**-20 * ||C_r||_1 * max |y|: CROWN
        folds C into the last layer and sums in another order than the forward pass, so a
        bound can be off by float32 rounding of terms as large as the outputs. Boxes whose
        bound falls inside that band are split down to points, decided exactly."""
        self._y_abs_max = float(y_abs_max)
        self._update_slack()

    def set_output_error(self, err: np.ndarray) -> None:
        """(n_out,) a bound on |float32 output - real output| over the box (``float_error``):
        each row's ``sum_j |A_rj| err_j`` joins the proof threshold and the band inside which
        a point's torch evaluation does not decide it."""
        self._out_err = np.abs(self.A64) @ np.asarray(err, dtype=np.float64).reshape(-1)
        self._update_slack()

    def _update_slack(self) -> None:
        y = float(self._y_abs_max or 0.0)
        err = self.coefficient_error * y + 2.0 ** -20 * np.abs(self.A64).sum(axis=1) * y
        if self._out_err is not None:
            err = err + self._out_err
        err32 = err.astype(np.float32)
        err32 = np.where(err32.astype(np.float64) < err, np.nextafter(err32, np.float32(np.inf)), err32)
        self.slack = torch.as_tensor(err32, dtype=torch.float32, device=self.b.device)

    @property
    def n_rows(self) -> int:
        return int(self.b.numel())

    def poly_max(self, row_values: Tensor) -> Tensor:
        """(N, R) per-row values -> (N, n_poly) maximum over each polytope's rows."""
        out = torch.full((row_values.shape[0], self.n_poly), _NEG, dtype=row_values.dtype,
                         device=row_values.device)
        idx = self.poly.unsqueeze(0).expand_as(row_values)
        return out.scatter_reduce(1, idx, row_values, reduce="amax", include_self=True)

    def margins(self, y: Tensor) -> Tensor:
        """(N, n_out) outputs -> (N,) margin; <= 0 means unsafe."""
        rows = y.reshape(y.shape[0], -1).float() @ self.C.T - self.b
        return self.poly_max(rows).min(dim=1).values

    def refuted(self, row_lower: Tensor) -> Tensor:
        """(N, R) lower bounds of C y -> (N, n_poly) bool: polytope proven empty on the box.

        A row counts only when its bound clears b by a relative 1e-6 plus ``slack`` (see
        set_output_bound): bounds are float32 sums, and a proof must not rest on their last
        bits."""
        tol = 1e-6 * (1.0 + row_lower.abs() + self.b.abs())
        if self.slack is not None:
            tol = tol + self.slack
        gap = torch.where(row_lower - self.b > tol, row_lower - self.b, torch.zeros_like(row_lower))
        return self.poly_max(gap) > 0

    def tolerance64(self) -> np.ndarray:
        """(R,) the band a row's bound must clear b by for a proof (as ``refuted``), as float64
        with the outputs' magnitude standing in for the bound: the integer program relaxes the
        unsafe rows by it, so it proves exactly what a bound of the same precision could."""
        y = float(self._y_abs_max or 0.0)
        tol = 1e-6 * (1.0 + np.abs(self.b64) + np.abs(self.A64).sum(axis=1) * y)
        if self.slack is not None:
            tol = tol + self.slack.double().cpu().numpy()
        return tol

    def point_margins(self, y: Tensor):
        """(N, n_out) outputs of single points -> (margin, tolerance), both (N,) float64: the
        margin against the spec's own float64 rows, and the band (relative 1e-5 of the terms'
        magnitude, plus the output's float32 error where known) inside which the float32 torch
        evaluation is not trusted to decide."""
        y64 = y.reshape(y.shape[0], -1).double()
        A = torch.as_tensor(self.A64, device=y.device)
        b = torch.as_tensor(self.b64, device=y.device)
        rows = y64 @ A.T - b
        scale = (y64.abs() @ A.abs().T + b.abs()).max(dim=1).values
        band = 1e-5 * (1.0 + scale)
        if self._out_err is not None and self._out_err.size:
            band = band + float(self._out_err.max())
        return self.poly_max(rows).min(dim=1).values, band

    def violated_exactly(self, y: np.ndarray) -> Optional[int]:
        """The first polytope that output y (flat, any float type) lies in, evaluated in float64
        against the spec's own rows, or None."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        vals = self.A64 @ y - self.b64
        poly = self.poly.cpu().numpy()
        for p in range(self.n_poly):
            if np.all(vals[poly == p] <= 0):
                return p
        return None


def _empty_in_output_space(p) -> bool:
    """Whether no output vector at all satisfies ``p.A y <= p.b`` (e.g. Y_0 >= 1 and Y_0 <= 0):
    such a polytope is refuted on every box, though no single row is, and branching on the
    input never refutes it (an audit's float network timed out on one). Decided by an LP
    (HiGHS) on rows loosened by 1e-6 (1 + |b|), so that only a clearly empty polytope counts."""
    if len(p.b) < 2:
        return False
    import highspy

    A = np.asarray(p.A, dtype=np.float64)
    m, n = A.shape
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_ = np.zeros(n)
    lp.col_lower_, lp.col_upper_ = np.full(n, -highspy.kHighsInf), np.full(n, highspy.kHighsInf)
    lp.row_lower_ = np.full(m, -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(p.b, dtype=np.float64) + 1e-6 * (1 + np.abs(p.b))
    rows, cols = np.nonzero(A.T)             # column-wise: (column, row) pairs in column order
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(rows, np.arange(n + 1))
    lp.a_matrix_.index_ = cols
    lp.a_matrix_.value_ = A.T[rows, cols]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    return h.getModelStatus() == highspy.HighsModelStatus.kInfeasible
