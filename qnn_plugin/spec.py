"""Read VNN-LIB properties (1.0 as VNN-COMP 2021-2025 writes them, and 2.0) into one form.

Internal form
-------------
A :class:`Spec` is a tuple of :class:`Case` s. Each case is an input box ``lower <= x <= upper``
(inputs flattened in C order) with its unsafe set, a disjunction of :class:`Polytope` s
``A @ y <= b``. The property is violated (``sat``) iff some case has an input in its box whose
output lies in one of the case's polytopes. A polytope with no rows is the whole output space.

How a file is read
------------------
The ``vnnlib`` package (1.0.2) does the parsing, type checking and the DNF conversion
(``vnnlib.compat.transform``). It only reads VNN-LIB 2.0, so this module

* tokenizes the text itself (an s-expression reader that tracks line and column), checks a 1.0
  file (``declare-const X_i Real``, no version line) and translates it to 2.0 syntax
  (``declare-network``, ``X[i]``, every number written as a plain decimal ``float64`` literal:
  the package rejects scientific notation and, for ``float64`` variables, integer literals);
* passes 2.0 text through, only rewriting its assertions as described below and its numbers
  in scientific notation as plain decimals;
* maps the package's error positions (in the translated text) back to the original line and
  column, and wraps every package error in :class:`SpecError`.

Workarounds for gaps in vnnlib 1.0.2 (observed, not assumed)
-----------------------------------------------------------
* Several top-level ``assert`` s are not distributed correctly by ``compat.transform``: with a
  box in separate asserts and an ``(assert (or ...))`` over outputs it returns a case with an
  unbounded input and a spurious case with no output constraint. All assertions are therefore
  wrapped in one ``(assert (and ...))``, which it handles correctly.
* ``==`` keeps only one ``<=`` row (``(== X[0] 0.25)`` gives the box ``(-inf, 0.25)``), so
  ``(= a b)`` / ``(== a b)`` are emitted as ``(and (<= a b) (>= a b))``.
* ``<`` / ``>`` are treated as ``<=`` / ``>=``. That is kept: the unsafe set becomes its closure,
  a superset, so an ``unsat`` answer stays sound (a ``sat`` counterexample on the boundary is
  still checked against the model by the verifier's own validation).
* A case whose input box is empty (lower > upper) is silently dropped. The boxes are therefore
  recomputed from the package's own DNF (``BoolExpr.to_dnf``) to report such a box, and a
  missing bound, with the variable and the lines at fault.
* Errors from ``compat.transform`` (mixed input/output atoms, non-linear terms, constraints on
  several inputs) carry no position, so a 1.0 file is checked for these first, naming the line.

Not supported (SpecError): input sets other than boxes, atoms mixing inputs and outputs,
non-linear terms, 2.0 queries with several networks or input/output variables, and (a package
limitation) a constant atom that is false, such as ``(<= 3 2)``, even inside an ``or``. Cases
come in the package's order (grouped by input box), not necessarily the file's.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import vnnlib
import vnnlib.compat

from .errors import SpecError

__all__ = ["Polytope", "Case", "Spec", "parse_vnnlib", "read_vnnlib", "SpecError"]


# ---------------------------------------------------------------------------------------------
# Internal form
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Polytope:
    """One disjunct of a case's unsafe set: every row holds, ``A @ y <= b``."""
    A: np.ndarray  # (m, n_outputs) float64
    b: np.ndarray  # (m,) float64

    def contains(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.A @ np.asarray(y, dtype=np.float64) <= self.b + tol))


@dataclass(frozen=True)
class Case:
    """One input box with its unsafe set (a disjunction of polytopes)."""
    lower: np.ndarray  # (n_inputs,) float64, flattened C order
    upper: np.ndarray  # (n_inputs,) float64
    unsafe: Tuple[Polytope, ...]

    def is_unsafe(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return any(p.contains(y, tol) for p in self.unsafe)


@dataclass(frozen=True)
class Spec:
    """The property is violated iff some case has an input in its box whose output is unsafe."""
    cases: Tuple[Case, ...]
    n_inputs: int
    n_outputs: int
    source: str

    def check_model(self, n_inputs: int, n_outputs: int) -> None:
        """Raise SpecError when the model's input/output sizes differ from the property's."""
        if (n_inputs, n_outputs) != (self.n_inputs, self.n_outputs):
            raise SpecError(
                f"{self.source}: the property has {self.n_inputs} inputs and {self.n_outputs} "
                f"outputs, but the model has {n_inputs} inputs and {n_outputs} outputs")


# ---------------------------------------------------------------------------------------------
# S-expression reader (both versions)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Atom:
    text: str
    line: int
    col: int


@dataclass(frozen=True)
class _List:
    items: Tuple["_Node", ...]
    line: int
    col: int
    end_line: int

    @property
    def head(self) -> Optional[str]:
        return self.items[0].text if self.items and isinstance(self.items[0], _Atom) else None


_Node = Union[_Atom, _List]
_DELIMS = set("();\"")


def _fail(source: str, line: int, col: int, msg: str) -> SpecError:
    return SpecError(f"{source}:{line}:{col}: {msg}")


def _tokenize(text: str, source: str):
    """Yield (kind, text, line, col); kind is '(' , ')' or 'atom'. Comments are dropped."""
    line, col, i, n = 1, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, col, i = line + 1, 1, i + 1
        elif c.isspace():  # includes the '\r' of CRLF
            col, i = col + 1, i + 1
        elif c == ";":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "()":
            yield c, c, line, col
            col, i = col + 1, i + 1
        elif c == '"':  # 2.0 onnx names are quoted strings
            j = text.find('"', i + 1)
            if j < 0 or "\n" in text[i:j]:
                raise _fail(source, line, col, "unterminated string literal")
            yield "atom", text[i:j + 1], line, col
            col, i = col + j + 1 - i, j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _DELIMS:
                j += 1
            yield "atom", text[i:j], line, col
            col, i = col + j - i, j


def _read_forms(text: str, source: str) -> List[_Node]:
    """Read all top-level s-expressions; unbalanced parentheses name the position at fault."""
    stack: List[Tuple[int, int, List[_Node]]] = []
    top: List[_Node] = []
    for kind, tok, line, col in _tokenize(text, source):
        if kind == "(":
            stack.append((line, col, []))
        elif kind == ")":
            if not stack:
                raise _fail(source, line, col, "unexpected ')' with no matching '('")
            l0, c0, items = stack.pop()
            node = _List(tuple(items), l0, c0, line)
            (stack[-1][2] if stack else top).append(node)
        else:
            atom = _Atom(tok, line, col)
            if not stack:
                raise _fail(source, line, col, f"expected '(' at top level, found {tok!r}")
            stack[-1][2].append(atom)
    if stack:
        l0, c0, _ = stack[-1]
        raise _fail(source, l0, c0, "'(' is never closed (expected ')' before the end of the text)")
    return top


# ---------------------------------------------------------------------------------------------
# Writer of the 2.0 text, remembering where each token came from
# ---------------------------------------------------------------------------------------------

class _Emitter:
    def __init__(self) -> None:
        self.parts: List[str] = []
        self.line, self.col = 1, 1
        self.origins: List[Tuple[int, int, str, int, int]] = []  # eline, ecol, text, oline, ocol
        self._by_line: Optional[Dict[int, list]] = None  # index of origins, built on first use
        self._indexed: list = []
        self._last_line: Optional[int] = None

    def put(self, s: str, at: Optional[Union[_Atom, _List]] = None) -> None:
        if at is not None:
            if self._last_line is not None and at.line > self._last_line:
                self.put("\n")  # follow the original line breaks: the package reports lines
            self._last_line = at.line
            self.origins.append((self.line, self.col, s, at.line, at.col))
        self.parts.append(s)
        nl = s.count("\n")
        self.line, self.col = (self.line + nl, len(s) - s.rfind("\n")) if nl else \
            (self.line, self.col + len(s))

    def text(self) -> str:
        return "".join(self.parts)

    def origin(self, line: int, col: Optional[int] = None,
               symbol: Optional[str] = None) -> Optional[Tuple[int, int]]:
        """Original (line, col) of the emitted token at (line, col), or the one naming symbol."""
        if self._by_line is None or len(self._indexed) != len(self.origins):
            self._by_line, self._indexed = {}, list(self.origins)
            for o in self.origins:
                self._by_line.setdefault(o[0], []).append(o)
        on_line = self._by_line.get(line, [])
        if col is not None:
            before = [o for o in on_line if o[1] <= col]
            if before:
                return before[-1][3:]
        if symbol:  # the exact token first, then an indexed variable (symbol 'X', token 'X[1]')
            named = [o for o in on_line if o[2] == symbol] or \
                [o for o in on_line if o[2].startswith(symbol + "[")]
            if named:
                return named[0][3:]
        return on_line[0][3:] if on_line else None

    def oline(self, line: int) -> int:
        """Original line of an emitted line (the package's Var.line), or the emitted one."""
        o = self.origin(line)
        return o[0] if o else line


# ---------------------------------------------------------------------------------------------
# VNN-LIB 1.0 -> 2.0
# ---------------------------------------------------------------------------------------------

_VAR_RE = re.compile(r"^([XY])_(0|[1-9][0-9]*)$")
_NUM_RE = re.compile(r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")
_CMP = {"<=": "<=", ">=": ">=", "<": "<", ">": ">", "=": "==", "==": "=="}
_ARITH = {"+", "-", "*"}
_SMT_NOOPS = {"check-sat", "exit", "set-logic", "set-info", "set-option", "get-model"}


@dataclass
class _V1:
    """Declarations of a 1.0 file."""
    source: str
    decls: Dict[str, Dict[int, _Atom]] = field(default_factory=lambda: {"X": {}, "Y": {}})

    def size(self, kind: str) -> int:
        return len(self.decls[kind])


def _float_literal(atom: _Atom, source: str) -> str:
    """A number as a plain float64 decimal the package reads to the same double."""
    if not _NUM_RE.match(atom.text):
        raise _fail(source, atom.line, atom.col,
                    f"expected a number or a declared variable, found {atom.text!r}")
    value = float(atom.text)
    if not math.isfinite(value):
        raise _fail(source, atom.line, atom.col, f"number {atom.text!r} is out of float64 range")
    return np.format_float_positional(value, unique=True, trim="0")


def _collect_decls(forms: Sequence[_Node], v1: _V1) -> List[_List]:
    """Record the declared X_i / Y_j and return the assertions, in file order."""
    src, asserts = v1.source, []
    for f in forms:
        head = f.head if isinstance(f, _List) else None
        if head == "declare-const":
            if len(f.items) != 3 or not all(isinstance(x, _Atom) for x in f.items):
                raise _fail(src, f.line, f.col, "expected (declare-const NAME Real)")
            name, typ = f.items[1], f.items[2]
            m = _VAR_RE.match(name.text)
            if not m:
                raise _fail(src, name.line, name.col, f"unsupported variable name {name.text!r}: "
                            "expected X_i (input) or Y_j (output)")
            if typ.text != "Real":
                raise _fail(src, typ.line, typ.col, f"expected type Real, found {typ.text!r}")
            table = v1.decls[m.group(1)]
            if int(m.group(2)) in table:
                raise _fail(src, name.line, name.col, f"{name.text} is declared twice")
            table[int(m.group(2))] = name
        elif head == "assert":
            if len(f.items) != 2:
                raise _fail(src, f.line, f.col, "expected (assert EXPRESSION)")
            asserts.append(f)
        elif head in _SMT_NOOPS:
            continue
        else:
            raise _fail(src, f.line, f.col, f"unknown command {head or '(...)'!r}: "
                        "expected declare-const or assert")
    for kind in "XY":
        _check_contiguous(kind, v1)
    return asserts


def _check_contiguous(kind: str, v1: _V1) -> None:
    table = v1.decls[kind]
    what = "input" if kind == "X" else "output"
    if not table:
        raise SpecError(f"{v1.source}: no {what} variables declared "
                        f"(expected (declare-const {kind}_0 Real) ...)")
    missing = sorted(set(range(max(table) + 1)) - set(table))
    if missing:
        shown = ", ".join(f"{kind}_{i}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise SpecError(f"{v1.source}: {what} declarations have gaps: {shown} not declared "
                        f"although {kind}_{max(table)} is")


def _emit_bool(node: _Node, v1: _V1, out: _Emitter) -> None:
    """Check and write a 1.0 boolean expression as 2.0."""
    src = v1.source
    if not isinstance(node, _List) or node.head is None:
        raise _fail(src, node.line, node.col, "expected a constraint such as (<= X_0 1.0), "
                    f"(and ...) or (or ...), found {_show(node)}")
    head, args = node.head, node.items[1:]
    if head in ("and", "or"):
        if not args:
            raise _fail(src, node.line, node.col, f"({head}) needs at least one argument")
        out.put(f"({head}", node.items[0])
        for a in args:
            out.put(" ")
            _emit_bool(a, v1, out)
        out.put(")")
    elif head in _CMP:
        _emit_comparison(node, v1, out)
    else:
        raise _fail(src, node.line, node.col, f"unknown operator {head!r}: expected and, or, "
                    "<=, >=, <, >, =")


_Pieces = List[Tuple[str, Optional[_Node]]]  # text with the node it came from


def _emit_comparison(node: _List, v1: _V1, out: _Emitter) -> None:
    src, head, args = v1.source, node.head, node.items[1:]
    if len(args) != 2:
        raise _fail(src, node.line, node.col, f"({head} ...) needs exactly 2 arguments, "
                    f"found {len(args)}")
    used: Dict[str, set] = {"X": set(), "Y": set()}
    sides: List[_Pieces] = [[], []]
    for a, pieces in zip(args, sides):
        _emit_arith(a, v1, pieces, used)
    if used["X"] and used["Y"]:
        raise _fail(src, node.line, node.col, "unsupported: this constraint mixes inputs (X) and "
                    "outputs (Y); only bounds on inputs and linear constraints on outputs are "
                    "supported")
    if len(used["X"]) > 1:
        raise _fail(src, node.line, node.col, "unsupported: an input constraint must bound a "
                    "single variable (the input set must be a box)")
    if _CMP[head] == "==":  # the package keeps only one row of ==
        out.put("(and ", node.items[0])
        for op in ("<=", ">="):
            _put_cmp(op, node, sides, out)
        out.put(")")
    else:
        _put_cmp(head, node, sides, out)


def _put_cmp(op: str, node: _List, sides: List[_Pieces], out: _Emitter) -> None:
    out.put(f"({op}", node.items[0])
    for pieces in sides:
        out.put(" ")
        for text, origin in pieces:
            out.put(text, origin)
    out.put(")")


def _emit_arith(node: _Node, v1: _V1, out: _Pieces, used: Dict[str, set]) -> bool:
    """Append a linear term to out; return whether it contains a variable."""
    src = v1.source
    if isinstance(node, _Atom):
        m = _VAR_RE.match(node.text)
        if m:
            kind, idx = m.group(1), int(m.group(2))
            if idx not in v1.decls[kind]:
                what = "input" if kind == "X" else "output"
                raise _fail(src, node.line, node.col, f"undeclared {what} variable {node.text} "
                            f"(declared: {kind}_0 .. {kind}_{v1.size(kind) - 1})")
            used[kind].add(idx)
            out.append((f"{kind}[{idx}]", node))
            return True
        out.append((_float_literal(node, src), node))
        return False
    head, args = node.head, node.items[1:]
    if head not in _ARITH:
        raise _fail(src, node.line, node.col, f"unsupported term {_show(node)}: expected a "
                    "number, a declared variable, or (+ ...), (- ...), (* ...)")
    if not args:
        raise _fail(src, node.line, node.col, f"({head}) needs at least one argument")
    out.append((f"({head}", node.items[0]))
    with_vars = 0
    for a in args:
        out.append((" ", None))
        with_vars += _emit_arith(a, v1, out, used)
    out.append((")", None))
    if head == "*" and with_vars > 1:
        raise _fail(src, node.line, node.col, "unsupported non-linear term: a product of "
                    "variables")
    return with_vars > 0


def _show(node: _Node) -> str:
    if isinstance(node, _Atom):
        return repr(node.text)
    return f"'({node.head or '...'} ...)'"


def _translate_v1(forms: Sequence[_Node], source: str) -> Tuple[str, _Emitter, Dict]:
    v1 = _V1(source)
    asserts = _collect_decls(forms, v1)
    if not asserts:
        raise SpecError(f"{source}: no assertions: every input needs a lower and an upper bound")
    nx, ny = v1.size("X"), v1.size("Y")
    out = _Emitter()
    out.put(f"(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float64 [{nx}])\n"
            f"  (declare-output Y float64 [{ny}]))\n(assert (and")
    for a in asserts:  # one enclosing `and`: the package mis-distributes several asserts
        out.put("\n  ")
        _emit_bool(a.items[1], v1, out)
    out.put("))\n")
    info = {"n_inputs": nx, "n_outputs": ny, "x_shape": (nx,), "x_name": lambda i: f"X_{i}"}
    return out.text(), out, info


# ---------------------------------------------------------------------------------------------
# VNN-LIB 2.0: pass through, only merging assertions and splitting ==
# ---------------------------------------------------------------------------------------------

def _emit_v2(node: _Node, out: _Emitter, source: str) -> None:
    if isinstance(node, _Atom):   # scientific notation as a plain decimal (the package's gap)
        sci = _NUM_RE.match(node.text) and any(c in node.text for c in "eE")
        out.put(_float_literal(node, source) if sci else node.text, node)
        return
    if node.head == "==" and len(node.items) == 3:
        out.put("(and ", node)
        for op in ("<=", ">="):
            out.put(f"({op}", node)
            for a in node.items[1:]:
                out.put(" ")
                _emit_v2(a, out, source)
            out.put(")")
        out.put(")")
        return
    out.put("(", node)
    for k, item in enumerate(node.items):
        if k:
            out.put(" ")
        _emit_v2(item, out, source)
    out.put(")")


def _translate_v2(forms: Sequence[_Node], source: str) -> Tuple[str, _Emitter, None]:
    out = _Emitter()
    asserts = [f for f in forms if isinstance(f, _List) and f.head == "assert"]
    if not asserts:
        raise SpecError(f"{source}: no assertions: every input needs a lower and an upper bound")
    for f in forms:
        if not (isinstance(f, _List) and f.head == "assert"):
            _emit_v2(f, out, source)
            out.put("\n")
    out.put("(assert (and")  # one enclosing `and`: the package mis-distributes several asserts
    for a in asserts:
        for item in a.items[1:]:
            out.put("\n  ")
            _emit_v2(item, out, source)
    out.put("))\n")
    return out.text(), out, None


def _v2_info(q, source: str) -> Dict:
    nets = q.networks
    if len(nets) != 1 or len(nets[0].inputs) != 1 or len(nets[0].outputs) != 1:
        raise SpecError(f"{source}: unsupported: expected one network with one input and one "
                        "output variable")
    inp, outp = nets[0].inputs[0], nets[0].outputs[0]
    shape = tuple(int(s) for s in inp.shape)
    name = inp.name

    def x_name(i: int) -> str:
        return f"{name}[{', '.join(str(int(k)) for k in np.unravel_index(i, shape))}]"
    return {"n_inputs": int(np.prod(shape)), "n_outputs": int(np.prod(outp.shape)),
            "x_shape": shape, "x_name": x_name}


# ---------------------------------------------------------------------------------------------
# Package calls, with its errors mapped back to the original text
# ---------------------------------------------------------------------------------------------

_SYNTAX_RE = re.compile(r"syntax error at line (\d+), column (\d+): '(.*)'", re.S)


def _package_error(exc: Exception, out: _Emitter, source: str) -> SpecError:
    """A SpecError with the original position for one of the package's exceptions."""
    text = str(exc).strip()
    m = _SYNTAX_RE.search(text)
    if m:
        pos = out.origin(int(m.group(1)), int(m.group(2)) + 1)  # the package counts from 0
        tok = m.group(3) or "end of text"
        where = f"{source}:{pos[0]}:{pos[1]}" if pos else source
        return SpecError(f"{where}: syntax error at {tok!r} (expected a VNN-LIB expression)")
    try:
        report = json.loads(text)
    except ValueError:
        msg = text.removeprefix("CompatTransformer:").strip()
        return SpecError(f"{source}: unsupported property: {msg}")
    lines = []
    for err in report.get("errors", [])[:5]:
        pos = out.origin(int(err.get("line", 0)), None, err.get("offendingSymbol"))
        where = f"{source}:{pos[0]}:{pos[1]}" if pos else source
        lines.append(f"{where}: {err.get('message', 'error')} at "
                     f"{err.get('offendingSymbol', '?')!r}: {err.get('hint', '')}".rstrip(": "))
    return SpecError("\n".join(lines) or f"{source}: {text}")


def _parse_package(text: str, out: _Emitter, source: str):
    try:
        return vnnlib.parse_query_string(text)
    except Exception as exc:  # the package raises VNNLibException (and RuntimeError) variants
        raise _package_error(exc, out, source) from None


def _transform(q, out: _Emitter, source: str):
    try:
        return vnnlib.compat.transform(q)
    except Exception as exc:
        raise _package_error(exc, out, source) from None


# ---------------------------------------------------------------------------------------------
# Input boxes from the package's DNF: only to report missing bounds and empty boxes, which
# compat.transform reports as +-inf (without the lines) or drops silently.
# ---------------------------------------------------------------------------------------------

def _bound_of(cmp, shape) -> Optional[Tuple[int, str, float, int]]:
    """(flat index, 'lower' or 'upper', value, emitted line) of an input bound, else None."""
    lhs, rhs = cmp.lhs.to_linear_expr(), cmp.rhs.to_linear_expr()
    terms = [(t, 1.0) for t in lhs.terms] + [(t, -1.0) for t in rhs.terms]
    inputs = [(t, s) for t, s in terms if t.var.kind == vnnlib.SymbolKind.Input]
    if not inputs or len(inputs) != len(terms):
        return None
    a = sum(t.coeff * s for t, s in inputs)
    if a == 0 or len({t.var_name for t, _ in inputs}) != 1:
        return None
    value = (rhs.constant - lhs.constant) / a  # a*x <op> value*a
    is_upper = isinstance(cmp, (vnnlib.LessEqual, vnnlib.LessThan)) == (a > 0)
    var = inputs[0][0].var
    flat = int(np.ravel_multi_index(tuple(var.indices), shape)) if len(shape) > 1 \
        else int(var.indices[0])
    return flat, "upper" if is_upper else "lower", value, var.line


def _lines_note(lines) -> str:
    if not lines:
        return ""
    lo, hi = min(lines), max(lines)
    return f" (bounds on line {lo})" if lo == hi else f" (bounds on lines {lo}-{hi})"


def _check_dnf_boxes(q, info: Dict, out: _Emitter, source: str) -> None:
    shape, n, name = info["x_shape"], info["n_inputs"], info["x_name"]
    boxes: Dict[tuple, None] = {}
    for conj in q.assertions[0].expr.to_dnf():
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        lo_line, hi_line, lines = [0] * n, [0] * n, set()
        for cmp in conj:
            bound = _bound_of(cmp, shape)
            if bound is None:
                continue
            i, side, v, eline = bound
            line = out.oline(eline)
            lines.add(line)
            if side == "lower" and v > lo[i]:
                lo[i], lo_line[i] = v, line
            elif side == "upper" and v < hi[i]:
                hi[i], hi_line[i] = v, line
        key = (lo.tobytes(), hi.tobytes())
        if key in boxes:
            continue
        boxes[key] = None
        case = f"input box {len(boxes)}" + _lines_note(lines)
        for i in range(n):
            if lo[i] > hi[i]:
                raise SpecError(f"{source}: empty input box: {name(i)} has lower bound "
                                f"{float(lo[i])!r} (line {lo_line[i]}) > upper bound "
                                f"{float(hi[i])!r} (line {hi_line[i]}) in {case}")
            for side, v in (("lower", lo[i]), ("upper", hi[i])):
                if not np.isfinite(v):
                    raise SpecError(f"{source}: {name(i)} has no {side} bound in {case}")


def _suspicious(q, raw) -> bool:
    """Whether compat.transform dropped a DNF disjunct (an empty box) or left a bound open."""
    kept = sum(len(c.output_constraints) for c in raw)
    if kept < len(q.assertions[0].expr.to_dnf()):
        return True
    return any(not (math.isfinite(lo) and math.isfinite(hi))
               for c in raw for lo, hi in c.input_box)


def _to_case(c, k: int, n_cases: int, info: Dict, source: str) -> Case:
    box = np.asarray(c.input_box, dtype=np.float64).reshape(-1, 2)
    lower, upper = box[:, 0] + 0.0, box[:, 1] + 0.0  # + 0.0 turns the package's -0.0 into 0.0
    for i in range(info["n_inputs"]):  # safety net behind the DNF check
        if not (np.isfinite(lower[i]) and np.isfinite(upper[i]) and lower[i] <= upper[i]):
            raise SpecError(f"{source}: {info['x_name'](i)} has an invalid or missing bound "
                            f"[{float(lower[i])!r}, {float(upper[i])!r}] in case {k + 1} of "
                            f"{n_cases}")
    m = info["n_outputs"]
    polys = tuple(Polytope(np.asarray(p.coeff_matrix, dtype=np.float64).reshape(-1, m) + 0.0,
                           np.asarray(p.rhs, dtype=np.float64).reshape(-1) + 0.0)
                  for p in c.output_constraints)
    return Case(lower, upper, polys)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def parse_vnnlib(text: str, source: str = "<string>") -> Spec:
    """Parse VNN-LIB 1.0 (VNN-COMP style) or 2.0 text into a Spec; bad input -> SpecError."""
    forms = _read_forms(text, source)
    is_v2 = bool(forms) and isinstance(forms[0], _List) and forms[0].head == "vnnlib-version"
    translated, out, info = (_translate_v2 if is_v2 else _translate_v1)(forms, source)
    q = _parse_package(translated, out, source)
    if info is None:
        info = _v2_info(q, source)
    raw = _transform(q, out, source)
    if _suspicious(q, raw):  # the DNF check is slower: run it only where it can find something
        _check_dnf_boxes(q, info, out, source)
    if not raw:
        raise SpecError(f"{source}: the property has no satisfiable case")
    cases = tuple(_to_case(c, k, len(raw), info, source) for k, c in enumerate(raw))
    return Spec(cases, info["n_inputs"], info["n_outputs"], source)


def read_vnnlib(path: Union[str, Path]) -> Spec:
    """Read a .vnnlib file; a missing or unreadable file is a SpecError naming the path."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")  # -sig: drop a byte-order mark
    except OSError as exc:
        raise SpecError(f"cannot read VNN-LIB file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_vnnlib(text, str(path))
