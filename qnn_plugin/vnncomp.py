"""VNN-COMP file formats and scoring: results files, instances.csv, expected verdicts, score table.

Cheap to import: numpy and the standard library only (no torch here; note that importing any
``qnn_plugin`` submodule still runs the package ``__init__``).

Results file (what ``run_instance.sh`` must leave at RESULTS_FILE)::

    sat
    ((X_0 0.5)
     (X_1 -0.25)
     (Y_0 1.0))

first line one of ``sat unsat timeout unknown error``; after ``sat`` the counterexample, X
flattened in C order, then Y. Values are written as the shortest ``repr`` of the exact double
equal to each stored value, so Python's ``float()`` (what the VNN-COMP checker uses) gives the
value back bit for bit, float32 included (subnormals, -0.0, inf and nan too).

Scoring (VNN-COMP 2025): +10 per correct sat/unsat, -150 per wrong answer or a sat whose
counterexample is invalid, 0 for timeout/error/unknown. Without a ground truth a sat/unsat is
counted as correct and the table says so.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import re
import shutil
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import QnnPluginError
from .verifier.result import VERDICTS

PathLike = Union[str, os.PathLike]

SCORE_CORRECT = 10
SCORE_WRONG = -150
#: verdict words other tools (and older VNN-COMP years) write, mapped to ours
VERDICT_ALIASES = {"holds": "unsat", "violated": "sat"}

__all__ = [
    "VERDICTS", "SCORE_CORRECT", "SCORE_WRONG", "VnnCompFormatError", "Instance", "ResultRow",
    "Expected", "format_value", "format_results", "write_results_file", "read_results_file",
    "atomic_write_text", "read_instances", "materialize", "read_expected", "score_instance",
    "score", "summary_table", "RESULTS_CSV_COLUMNS", "result_row_to_csv", "read_results_csv",
]


class VnnCompFormatError(QnnPluginError, ValueError):
    """A results file, instances.csv or expected-results CSV is malformed (message names the
    file and line)."""


# --------------------------------------------------------------------------- results files

def format_value(v) -> str:
    """Text for one counterexample value that ``float()`` parses back to exactly ``v``.

    ``repr`` of the Python float (the exact double equal to a float32/float64 value) is the
    shortest round-tripping decimal of that double; nan/inf come out as ``nan``/``inf``/``-inf``.
    """
    return repr(float(v))


def _verdict_and_ce(result) -> Tuple[str, Optional[np.ndarray], Optional[np.ndarray]]:
    """Accept a verdict string, a VerifyResult (``.verdict``, ``.counterexample.x/.y``) or any
    object with ``.verdict`` and ``.x``/``.y``."""
    if isinstance(result, str):
        return result, None, None
    verdict = result.verdict
    ce = getattr(result, "counterexample", None)
    src = ce if ce is not None else result
    return verdict, getattr(src, "x", None), getattr(src, "y", None)


def format_results(result) -> str:
    """The results-file text for ``result`` (see the module docstring)."""
    verdict, x, y = _verdict_and_ce(result)
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if verdict != "sat":
        return verdict + "\n"
    if x is None or y is None:
        raise ValueError("a sat result needs a counterexample (x and y)")
    lines = [f"(X_{i} {format_value(v)})" for i, v in enumerate(np.asarray(x).ravel())]
    lines += [f"(Y_{i} {format_value(v)})" for i, v in enumerate(np.asarray(y).ravel())]
    return "sat\n(" + "\n ".join(lines) + ")\n"


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same directory, fsync,
    ``os.replace``. Readers (and a process killed half way) see the old file or the new one,
    never a partial one. Parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_results_file(path: PathLike, result) -> None:
    """Write a VNN-COMP results file atomically. ``result``: a VerifyResult, a verdict string, or
    an object with ``.verdict`` and ``.x``/``.y``; a ``sat`` needs the counterexample."""
    atomic_write_text(path, format_results(result))


_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def read_results_file(path: PathLike, dtype=np.float64
                      ) -> Tuple[str, Optional[np.ndarray], Optional[np.ndarray]]:
    """Parse a results file -> ``(verdict, x, y)``; x/y are flat arrays for a ``sat`` with a
    counterexample, else None. Tolerant of layout (any whitespace and line breaks, upper case,
    ``holds``/``violated``); a ``sat`` without a counterexample gives x = y = None (scored as a
    missing counterexample). The default float64 holds the written doubles exactly (a float32
    counterexample written by ``write_results_file`` converts back to float32 bit for bit).
    Raises VnnCompFormatError for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise VnnCompFormatError(f"{path}: cannot read results file: {exc}") from None
    m = re.match(r"\s*([^\s()]+)", text)
    if m is None:
        raise VnnCompFormatError(f"{path}: empty results file (expected one of {', '.join(VERDICTS)})")
    word = m.group(1).lower()
    verdict = VERDICT_ALIASES.get(word, word)
    body_start = m.end()
    rest = text[body_start:]
    first_line = text.count("\n", 0, m.start(1)) + 1
    if verdict not in VERDICTS:
        raise VnnCompFormatError(f"{path}:{first_line}: expected one of {', '.join(VERDICTS)} first, "
                                 f"got {m.group(1)[:80]!r}")
    if verdict != "sat":
        if rest.strip():
            raise VnnCompFormatError(f"{path}:{first_line}: unexpected text after {verdict!r}: "
                                     f"{rest.strip()[:80]!r}")
        return verdict, None, None
    values: Dict[str, Dict[int, float]] = {"X": {}, "Y": {}}
    for m in _PAIR.finditer(rest):
        name, idx, tok = m.group(1), int(m.group(2)), m.group(3)
        line = text.count("\n", 0, body_start + m.start()) + 1
        try:
            v = float(tok)
        except ValueError:
            raise VnnCompFormatError(f"{path}:{line}: {name}_{idx}: not a number: {tok!r}") from None
        if idx in values[name]:
            raise VnnCompFormatError(f"{path}:{line}: {name}_{idx} given twice")
        values[name][idx] = v
    leftover = _PAIR.sub(" ", rest)
    if leftover.replace("(", " ").replace(")", " ").strip():
        raise VnnCompFormatError(f"{path}: unexpected text in the counterexample: "
                                 f"{leftover.strip()[:80]!r} (expected (X_i v) and (Y_j v) pairs)")
    out = []
    for name in ("X", "Y"):
        d = values[name]
        if not d:
            out.append(None)
            continue
        missing = sorted(set(range(len(d))) - set(d))
        if missing:
            raise VnnCompFormatError(f"{path}: counterexample indices of {name} are not 0..{len(d) - 1}: "
                                     f"{name}_{missing[0]} missing")
        out.append(np.array([d[i] for i in range(len(d))], dtype=dtype))
    return verdict, out[0], out[1]


# --------------------------------------------------------------------------- instances.csv

@dataclass(frozen=True)
class Instance:
    """One row of instances.csv. ``onnx``/``vnnlib``: absolute paths (the decompressed copy when
    read with ``decompress=True``, else possibly a ``.gz``); ``onnx_rel``/``vnnlib_rel``: as
    written in the CSV (used for results CSVs and expected-verdict lookups); ``line``: 1-based."""

    onnx: str
    vnnlib: str
    timeout: float
    onnx_rel: str = ""
    vnnlib_rel: str = ""
    line: int = 0


def _default_cache_dir() -> Path:
    env = os.environ.get("QNN_CACHE_DIR")
    if env:
        return Path(env) / "gunzip"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qnn_plugin" / "gunzip"


def _existing(path: str) -> Optional[str]:
    """The file that provides ``path``: itself, or ``path.gz`` (benchmarks ship large files
    gzipped and list them without the suffix), or None."""
    if os.path.isfile(path):
        return path
    if not path.endswith(".gz") and os.path.isfile(path + ".gz"):
        return path + ".gz"
    return None


def materialize(path: PathLike, cache_dir: Optional[PathLike] = None) -> str:
    """A readable uncompressed file for ``path``: ``path`` itself, or the decompressed copy of
    ``path`` (when it ends in ``.gz``) or of ``path.gz`` (when only that exists). Copies live in
    ``cache_dir`` (default ``$QNN_CACHE_DIR/gunzip`` or ``~/.cache/qnn_plugin/gunzip``), keyed by
    the source's path, size and mtime, and are written atomically so concurrent workers can share
    them."""
    path = os.path.abspath(os.fspath(path))
    src = _existing(path)
    if src is None:
        raise VnnCompFormatError(f"{path}: no such file" + ("" if path.endswith(".gz") else " (nor .gz)"))
    if not src.endswith(".gz"):
        return src
    st = os.stat(src)
    key = hashlib.sha1(f"{src}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = Path(cache_dir if cache_dir is not None else _default_cache_dir()) / key / os.path.basename(src)[:-3]
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with gzip.open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, out)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise VnnCompFormatError(f"{src}: cannot decompress: {exc}") from None
    return str(out)


def read_instances(folder: PathLike, *, decompress: bool = True, cache_dir: Optional[PathLike] = None,
                   check_files: bool = True) -> List[Instance]:
    """Read ``FOLDER/instances.csv`` (or the CSV file given directly): no header, one instance per
    row ``onnx,vnnlib,timeout_s`` with paths relative to the folder. Blank lines and lines
    starting with ``#`` are skipped. ``.gz`` files (listed with or without the suffix) are
    decompressed to the cache (see ``materialize``) when ``decompress``; otherwise the paths point
    at what exists. Bad rows (column count, timeout, missing files when ``check_files``) raise
    VnnCompFormatError naming the file and line."""
    folder = Path(folder)
    csv_path = folder if folder.is_file() else folder / "instances.csv"
    base = csv_path.parent.resolve()
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise VnnCompFormatError(f"{csv_path}: cannot read instances file: {exc}") from None
    out = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        row = [c.strip() for c in row]
        if not any(row) or row[0].startswith("#"):
            continue
        where = f"{csv_path}:{lineno}"
        if len(row) != 3:
            raise VnnCompFormatError(f"{where}: expected 3 columns onnx,vnnlib,timeout_s, got {len(row)}: "
                                     f"{','.join(row)[:120]!r}")
        onnx_rel, vnnlib_rel, t = row
        if not onnx_rel or not vnnlib_rel:
            raise VnnCompFormatError(f"{where}: empty path")
        try:
            timeout = float(t)
        except ValueError:
            raise VnnCompFormatError(f"{where}: timeout {t!r} is not a number") from None
        if not (timeout > 0 and math.isfinite(timeout)):
            raise VnnCompFormatError(f"{where}: timeout must be positive and finite, got {t!r}")
        paths = []
        for rel in (onnx_rel, vnnlib_rel):
            p = str(base / rel) if not os.path.isabs(rel) else rel
            p = os.path.normpath(p)
            if check_files or decompress:
                found = _existing(p)
                if found is None:
                    raise VnnCompFormatError(f"{where}: {rel}: no such file ({p})")
                p = found
                if decompress:
                    try:
                        p = materialize(p, cache_dir)
                    except VnnCompFormatError as exc:
                        raise VnnCompFormatError(f"{where}: {exc}") from None
            paths.append(p)
        out.append(Instance(paths[0], paths[1], timeout, onnx_rel, vnnlib_rel, lineno))
    return out


# --------------------------------------------------------------------------- expected verdicts

def _norm_key(p: str) -> str:
    p = os.path.normpath(p.strip()).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p[:-3] if p.endswith(".gz") else p


class Expected:
    """Ground-truth verdicts keyed by (onnx, vnnlib) paths as written in instances.csv. Lookup
    ignores ``./``, ``.gz`` and, when the full paths are not found, falls back to the file names
    (unless two rows share those names with different verdicts)."""

    def __init__(self, entries: Iterable[Tuple[str, str, str]] = ()):
        self.full: Dict[Tuple[str, str], str] = {}
        self.names: Dict[Tuple[str, str], Optional[str]] = {}
        for onnx, vnnlib, verdict in entries:
            self.add(onnx, vnnlib, verdict)

    def add(self, onnx: str, vnnlib: str, verdict: str) -> None:
        k = (_norm_key(onnx), _norm_key(vnnlib))
        self.full[k] = verdict
        nk = (os.path.basename(k[0]), os.path.basename(k[1]))
        self.names[nk] = verdict if self.names.get(nk, verdict) == verdict else None

    def get(self, onnx: str, vnnlib: str) -> Optional[str]:
        k = (_norm_key(onnx), _norm_key(vnnlib))
        if k in self.full:
            return self.full[k]
        return self.names.get((os.path.basename(k[0]), os.path.basename(k[1])))

    def __len__(self):
        return len(self.full)


def read_expected(path: PathLike) -> Expected:
    """Read expected verdicts. Accepted rows: ``onnx,vnnlib,expected`` (an optional header row is
    skipped), or a results CSV (ours or VNN-COMP's ``onnx,vnnlib,prepare_time,result,run_time``:
    the 4th column is used). Verdicts sat/unsat (``violated``/``holds`` accepted); other values
    (unknown, timeout, empty) mean "no ground truth" and are not stored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise VnnCompFormatError(f"{path}: cannot read expected-results file: {exc}") from None
    exp = Expected()
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        row = [c.strip() for c in row]
        if not any(row) or row[0].startswith("#"):
            continue
        if len(row) == 3:
            word = row[2]
        elif len(row) >= 5:
            word = row[3]
        else:
            raise VnnCompFormatError(f"{path}:{lineno}: expected onnx,vnnlib,expected (3 columns) or a "
                                     f"results CSV (5+ columns), got {len(row)} columns")
        word = word.lower()
        verdict = VERDICT_ALIASES.get(word, word)
        if verdict in ("sat", "unsat"):
            exp.add(row[0], row[1], verdict)
        elif verdict in VERDICTS or verdict == "":
            continue
        elif lineno == 1 or (len(exp) == 0 and word in ("expected", "result", "verdict")):
            continue  # header row
        else:
            raise VnnCompFormatError(f"{path}:{lineno}: unknown verdict {word!r}")
    return exp


# --------------------------------------------------------------------------- scoring and tables

# the VNN-COMP checker's tolerances: onnxruntime's output against the file's Y, and the
# violation (and box membership) on the file's values
CE_RTOL, CE_ATOL = 1e-3, 1e-4


def check_counterexample(onnx_path: PathLike, vnnlib_path: PathLike, x, y,
                         rtol: float = CE_RTOL, atol: float = CE_ATOL) -> Tuple[bool, str]:
    """Check a counterexample the way the VNN-COMP checker does, independently of the verifier:
    X (as written to the results file, i.e. exact float32 values) goes through onnxruntime with
    default session options; its output must match the file's Y within ``atol + rtol * |Y|``;
    X must lie in one of the property's input boxes and Y in one of that box's unsafe
    polytopes, both within ``atol``. Returns (valid, reason)."""
    import onnx
    import onnxruntime as ort

    from .spec import read_vnnlib

    x = np.asarray([float(format_value(v)) for v in np.ravel(x)], dtype=np.float64)
    y = np.asarray([float(format_value(v)) for v in np.ravel(y)], dtype=np.float64)
    model = onnx.load(os.fspath(onnx_path))
    init = {t.name for t in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in init][0]
    shape = tuple(d.dim_value or 1 for d in inp.type.tensor_type.shape.dim)
    if int(np.prod(shape)) != x.size:
        return False, f"X has {x.size} values, the model's input {shape} needs {int(np.prod(shape))}"
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = np.asarray(sess.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0],
                     dtype=np.float64).ravel()
    if out.size != y.size:
        return False, f"Y has {y.size} values, onnxruntime gives {out.size}"
    if np.any(np.abs(out - y) > atol + rtol * np.abs(y)):
        worst = float(np.max(np.abs(out - y)))
        return False, f"onnxruntime's output differs from Y by up to {worst:.3g}"
    spec = read_vnnlib(vnnlib_path)
    for i, case in enumerate(spec.cases):
        if np.all(x >= case.lower - atol) and np.all(x <= case.upper + atol):
            for j, poly in enumerate(case.unsafe):
                if np.all(poly.A @ y <= poly.b + atol):
                    return True, f"X in box {i}, Y in unsafe polytope {j}"
    return False, "Y is in no unsafe polytope of a box containing X"


@dataclass
class ResultRow:
    """One finished instance: the VNN-COMP results-CSV columns plus ours. ``ce_valid``: whether
    an independent check accepted the sat counterexample (None: not checked)."""

    onnx: str
    vnnlib: str
    result: str
    run_time: float
    prepare_time: float = 0.0
    stats: Dict[str, float] = field(default_factory=dict)
    message: str = ""
    ce_valid: Optional[bool] = None


RESULTS_CSV_COLUMNS = ("onnx", "vnnlib", "prepare_time", "result", "run_time", "stats", "message")


def result_row_to_csv(row: ResultRow) -> List[str]:
    """The CSV cells for ``row`` in RESULTS_CSV_COLUMNS order (stats as compact JSON with 6
    significant digits, message on one line)."""
    import json

    stats = json.dumps({k: (float(f"{float(v):.6g}") if isinstance(v, (int, float, np.floating, np.integer))
                            else str(v))
                        for k, v in (row.stats or {}).items()}, separators=(",", ":"), sort_keys=True)
    message = " ".join(str(row.message or "").split())
    return [row.onnx, row.vnnlib, f"{row.prepare_time:.3f}", row.result, f"{row.run_time:.3f}", stats, message]


def read_results_csv(path: PathLike) -> List[ResultRow]:
    """Read a results CSV written by ``qnn-verify --benchmark`` (or VNN-COMP's 5 columns)."""
    import json

    rows = []
    path = Path(path)
    for lineno, r in enumerate(csv.reader(path.read_text(encoding="utf-8").splitlines()), start=1):
        if not r:
            continue
        if len(r) < 5:
            raise VnnCompFormatError(f"{path}:{lineno}: expected at least 5 columns, got {len(r)}")
        try:
            stats = json.loads(r[5]) if len(r) > 5 and r[5] else {}
            rows.append(ResultRow(r[0], r[1], r[3].strip().lower(), float(r[4]), float(r[2] or 0), stats,
                                  r[6] if len(r) > 6 else ""))
        except ValueError as exc:
            raise VnnCompFormatError(f"{path}:{lineno}: {exc}") from None
    return rows


def score_instance(result: str, expected: Optional[str] = None,
                   ce_valid: Optional[bool] = None) -> Tuple[int, str]:
    """Points for one answer and why: ``correct`` / ``wrong`` / ``invalid_ce`` (sat whose
    counterexample was checked and rejected) / ``assumed`` (sat/unsat without ground truth,
    counted as correct) / ``none`` (timeout, unknown, error). A sat whose counterexample was
    checked valid is correct whatever ``expected`` says."""
    if result not in ("sat", "unsat"):
        return 0, "none"
    if result == "sat" and ce_valid is False:
        return SCORE_WRONG, "invalid_ce"
    if result == "sat" and ce_valid:
        return SCORE_CORRECT, "correct"
    if expected in ("sat", "unsat"):
        return (SCORE_CORRECT, "correct") if expected == result else (SCORE_WRONG, "wrong")
    return SCORE_CORRECT, "assumed"


def _get(row, name, default=None):
    return row.get(name, default) if isinstance(row, Mapping) else getattr(row, name, default)


def score(rows: Iterable, expected: Optional[Expected] = None) -> Tuple[int, Counter]:
    """Total score of ``rows`` (ResultRow or mappings with onnx, vnnlib, result[, ce_valid]) and a
    Counter of the ``score_instance`` reasons."""
    total, why = 0, Counter()
    for r in rows:
        exp = expected.get(_get(r, "onnx", ""), _get(r, "vnnlib", "")) if expected is not None else None
        pts, reason = score_instance(_get(r, "result"), exp, _get(r, "ce_valid"))
        total += pts
        why[reason] += 1
    return total, why


def summary_table(rows: Iterable, expected: Optional[Expected] = None, title: str = "") -> str:
    """A plain-text summary: verdict counts, total and median run time, VNN-COMP score. Rows:
    ResultRow or mappings with onnx, vnnlib, result, run_time[, ce_valid]."""
    rows = list(rows)
    counts = Counter(_get(r, "result") for r in rows)
    times = [float(_get(r, "run_time", 0.0) or 0.0) for r in rows]
    total, why = score(rows, expected)
    lines = [title] if title else []
    lines.append(f"{'instances':<10} {len(rows):>6}")
    for v in VERDICTS:
        lines.append(f"  {v:<8} {counts.get(v, 0):>6}")
    for v in sorted(set(counts) - set(VERDICTS), key=str):
        lines.append(f"  {str(v):<8} {counts[v]:>6}")
    med = statistics.median(times) if times else 0.0
    lines.append(f"{'time':<10} {sum(times):>10.1f} s total, {med:.2f} s median")
    wrong = why["wrong"] + why["invalid_ce"]
    lines.append(f"{'score':<10} {total:>6}   ({why['correct'] + why['assumed']} x {SCORE_CORRECT:+d}, "
                 f"{wrong} x {SCORE_WRONG:+d})")
    if why["wrong"]:
        lines.append(f"  {why['wrong']} answer(s) contradict the expected verdict")
    if why["invalid_ce"]:
        lines.append(f"  {why['invalid_ce']} sat answer(s) with an invalid counterexample")
    if why["assumed"]:
        src = "no expected verdicts given" if expected is None else "no expected verdict for them"
        lines.append(f"* {why['assumed']} of the sat/unsat answers are assumed correct ({src})")
    return "\n".join(lines)
