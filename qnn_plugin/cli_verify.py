"""qnn-verify: run the complete verifier on one VNN-COMP instance, or on a whole benchmark folder.

Single instance (what VNN-COMP's run_instance.sh calls)::

    qnn-verify MODEL.onnx PROP.vnnlib --timeout 60 --results-file out.txt

Benchmark (every row of FOLDER/instances.csv, in parallel worker processes)::

    qnn-verify --benchmark FOLDER --jobs 4 --results-csv results.csv

Worker pool (benchmark mode): ``--jobs`` processes started with the multiprocessing *spawn*
context; each imports torch and the runner once, sets ``torch.set_num_threads(cpus // jobs)``
and then runs instances one after another, receiving tasks and returning results over its own
pipe. The parent keeps a deadline per running instance (dispatch time + instance timeout +
``--grace``); a worker past its deadline is killed (SIGKILL), its instance recorded as
``timeout``, and a fresh worker is started. A worker that dies (segfault, out of memory, os._exit)
records ``error`` for its instance and is replaced the same way. The verifier is looked up through
``--runner module:function`` (default ``qnn_plugin.cli_verify:verify``) so tests can plug in fakes.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import math
import multiprocessing
import os
import signal
import sys
import textwrap
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .errors import QnnPluginError
from .vnncomp import (VERDICTS, Instance, ResultRow, check_counterexample, materialize,
                      read_expected, read_instances, result_row_to_csv, summary_table,
                      write_results_file)

PROG = "qnn-verify"
DEFAULT_RUNNER = "qnn_plugin.cli_verify:verify"
SMT_RUNNER = "qnn_plugin.cli_verify:verify_smt"
PLUGIN_OPTIONS = ("method", "branch", "split", "milp")
SMT_OPTIONS = ("backend", "dead_branches", "minimal_widths", "balanced_sums")
DEFAULT_GRACE = 30.0


def verify(onnx_path, vnnlib_path, *, timeout: float = 60.0, device=None, seed: int = 0,
           **options):
    """The verifier (``qnn_plugin.verifier.verify``), imported on first use; ``options`` are
    its keyword options (method, branch, split, milp, progress). Tests replace this module-level name
    (single-instance mode) or pass another ``--runner`` (benchmark mode)."""
    from .verifier import verify as _verify

    return _verify(onnx_path, vnnlib_path, timeout=timeout, device=device, seed=seed, **options)


def verify_smt(onnx_path, vnnlib_path, *, timeout: float = 60.0, device=None, seed: int = 0,
               **options):
    """The bit-exact SMT baseline (``qnn_plugin.baselines.smt.verify``), imported on first use;
    ``options``: backend, dead_branches, minimal_widths, balanced_sums."""
    from .baselines.smt import verify as _verify

    options.pop("progress", None)
    return _verify(onnx_path, vnnlib_path, timeout=timeout, device=device, seed=seed, **options)


# --------------------------------------------------------------------------- one instance

@dataclass
class Outcome:
    """What running one instance gave, in a picklable form. ``error_kind``: ``input`` (a
    QnnPluginError: bad model/spec), ``internal`` (any other exception: a bug, with
    ``traceback``), ``killed``/``died`` (benchmark worker overran its deadline / crashed), or None."""

    verdict: str
    message: str = ""
    stats: Dict[str, float] = field(default_factory=dict)
    x: Optional[object] = None
    y: Optional[object] = None
    run_time: float = 0.0
    error_kind: Optional[str] = None
    traceback: Optional[str] = None


def run_one(runner: Callable, onnx: str, vnnlib: str, *, timeout: float, device=None, seed: int = 0,
            cache_dir=None, options: Optional[dict] = None) -> Outcome:
    """Run ``runner(onnx, vnnlib, timeout=, device=, seed=)`` and turn anything it does (a
    VerifyResult, a QnnPluginError, any other exception, a malformed return value) into an
    Outcome. ``.gz`` inputs are decompressed first (see ``vnncomp.materialize``)."""
    t0 = time.perf_counter()
    try:
        onnx, vnnlib = materialize(onnx, cache_dir), materialize(vnnlib, cache_dir)
        res = runner(onnx, vnnlib, timeout=timeout, device=device, seed=seed, **(options or {}))
        verdict = getattr(res, "verdict", None)
        if verdict not in VERDICTS:
            raise TypeError(f"the verifier returned {res!r}, not a result with a verdict in {VERDICTS}")
        ce = getattr(res, "counterexample", None)
        x = y = None
        if ce is not None:
            import numpy as np

            x = np.asarray(ce.x).ravel()
            y = np.asarray(ce.y).ravel()
        if verdict == "sat" and (x is None or y is None):
            raise TypeError("the verifier answered sat without a counterexample")
        stats = dict(getattr(res, "stats", None) or {})
        return Outcome(verdict, str(getattr(res, "message", "") or ""), stats, x, y,
                       time.perf_counter() - t0)
    except QnnPluginError as exc:
        return Outcome("error", str(exc), run_time=time.perf_counter() - t0, error_kind="input")
    except Exception as exc:  # a bug: keep the traceback
        return Outcome("error", f"{type(exc).__name__}: {exc}", run_time=time.perf_counter() - t0,
                       error_kind="internal", traceback=traceback.format_exc())


def _fmt_num(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.2f}"
    try:
        return str(int(v)) if float(v).is_integer() else f"{float(v):.3g}"
    except (TypeError, ValueError, OverflowError):
        return str(v)


def stats_line(stats: Dict[str, float], run_time: Optional[float] = None) -> str:
    """One line: total time, the other ``time_*`` phases in parentheses, then the counters."""
    stats = dict(stats or {})
    total = stats.pop("time_total", run_time)
    phases = [f"{k[5:]} {_fmt_num(stats.pop(k))}" for k in list(stats) if k.startswith("time_")]
    parts = [f"time {_fmt_num(float(total)) if total is not None else '?'} s"
             + (f" ({', '.join(phases)})" if phases else "")]
    parts += [f"{k} {_fmt_num(v)}" for k, v in stats.items()]
    return " | ".join(parts)


def _report_error(out: Outcome, file=None) -> None:
    file = file or sys.stderr
    if out.error_kind == "internal" and out.traceback:
        file.write(out.traceback)
        print(f"{PROG}: internal error (please report): {out.message}", file=file)
    else:
        print(f"{PROG}: error: {out.message}", file=file)


def _process_age() -> float:
    """Seconds since this process started (Linux's /proc; 0 where that is not readable): the
    interpreter and the imports (2-3 s with torch) count against the instance's timeout."""
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        # starttime is the stat file's 22nd field, the 20th after the command name
        return max(0.0, uptime - int(after_name[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _single(args) -> int:
    rf = args.results_file
    if rf:
        # placeholder: if we are killed (VNN-COMP kills at TIMEOUT + 60 s) the file says timeout
        # rather than a stale answer from an earlier run; this also checks that it is writable
        try:
            write_results_file(rf, "timeout")
        except OSError as exc:
            print(f"{PROG}: error: cannot write results file {rf}: {exc}", file=sys.stderr)
            return 2
    try:
        runner = verify_smt if args.engine == "smt" else verify
        timeout = max(0.01, args.timeout - _process_age())
        out = run_one(runner, args.onnx, args.vnnlib, timeout=timeout, device=args.device,
                      seed=args.seed,
                      options=dict(_verifier_options(args), **({"progress": True} if args.verbose else {})))
    except KeyboardInterrupt:
        out = Outcome("unknown", "interrupted")
        if rf:
            write_results_file(rf, out)
        print("unknown", flush=True)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if rf:
        try:
            write_results_file(rf, out)
        except Exception as exc:  # e.g. a malformed counterexample: never leave a wrong file
            _report_error(Outcome("error", f"writing {rf}: {exc}", error_kind="internal",
                                  traceback=traceback.format_exc()))
            with contextlib.suppress(Exception):
                write_results_file(rf, "error")
            return 2
    print(out.verdict, flush=True)
    print(stats_line(out.stats, out.run_time), flush=True)
    if out.verdict == "error":
        _report_error(out)
        return 2
    if out.message:
        print(f"{out.verdict}: {out.message}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- worker pool

def _load_runner(spec: str) -> Callable:
    mod, sep, fn = spec.partition(":")
    if not sep or not mod or not fn:
        raise ValueError(f"runner must be 'module:function', got {spec!r}")
    try:
        obj = importlib.import_module(mod)
    except ModuleNotFoundError as exc:  # like ``python -m``: also look in the current directory
        if exc.name != mod.split(".")[0] or os.getcwd() in sys.path:
            raise
        sys.path.insert(0, os.getcwd())
        obj = importlib.import_module(mod)
    for part in fn.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"runner {spec!r} is not callable")
    return obj


def _worker_main(conn, runner_spec: str, threads: int) -> None:
    """Worker process: set torch's thread count, import the runner once, then run tasks
    ``(index, onnx, vnnlib, timeout, device, seed, cache_dir, options)`` until it reads None or
    EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
        runner = _load_runner(runner_spec)
    except BaseException:
        conn.send(("fatal", traceback.format_exc()))
        return
    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        idx, onnx, vnnlib, timeout, device, seed, cache_dir, options = task
        out = run_one(runner, onnx, vnnlib, timeout=timeout, device=device, seed=seed,
                      cache_dir=cache_dir, options=options)
        conn.send(("done", idx, out))


@contextlib.contextmanager
def _spawn_env(threads: int):
    """While starting a worker: thread-count variables set (read by torch's OpenMP at import) and
    SIGINT ignored (inherited through exec, so Ctrl-C during the worker's start-up does not print
    a traceback from it)."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for k in saved:
            os.environ[k] = str(threads)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if main:
            signal.signal(signal.SIGINT, old)


class PoolError(RuntimeError):
    """The pool cannot run at all (the runner does not import, workers die while starting)."""


class _Worker:
    def __init__(self, ctx, runner: str, threads: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, runner, threads), daemon=True,
                                name="qnn-verify-worker")
        with _spawn_env(threads):
            self.proc.start()
        child.close()
        self.started = time.monotonic()
        self.ready = False
        self.task = None  # (index, instance, dispatch time, deadline)

    def kill(self):
        with contextlib.suppress(Exception):
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class BenchmarkRun:
    rows: List[ResultRow]
    interrupted: bool = False
    total: int = 0


def _results_name(i: int, inst: Instance) -> str:
    def stem(p):
        name = os.path.basename(p)
        for suf in (".gz", ".onnx", ".vnnlib"):
            name = name[:-len(suf)] if name.endswith(suf) else name
        return name

    return f"{i:04d}_{stem(inst.onnx_rel or inst.onnx)}__{stem(inst.vnnlib_rel or inst.vnnlib)}.txt"


def run_benchmark(instances: Sequence[Instance], *, jobs: int = 1, runner: str = DEFAULT_RUNNER,
                  device=None, seed: int = 0, timeout_cap: Optional[float] = None,
                  grace: float = DEFAULT_GRACE, csv_path=None, results_dir=None, cache_dir=None,
                  progress: bool = True, startup_timeout: float = 300.0, check_ce: bool = True,
                  options: Optional[dict] = None,
                  on_result: Optional[Callable[[int, ResultRow, Outcome], None]] = None) -> BenchmarkRun:
    """Run ``instances`` in ``jobs`` spawn-context worker processes (see the module docstring).
    Rows are appended to ``csv_path`` (flushed) as instances finish; a ``results_dir`` gets one
    VNN-COMP results file per instance. ``options`` go to the runner as keyword arguments
    (the verifier's method, branch, split). With ``check_ce`` every sat counterexample is checked
    as the VNN-COMP checker does (``vnncomp.check_counterexample``) and scored as wrong if it
    fails. Ctrl-C stops the workers and returns what finished with ``interrupted=True``.
    Raises PoolError when workers cannot start at all."""
    from tqdm import tqdm

    instances = list(instances)
    run = BenchmarkRun([], total=len(instances))
    if not instances:
        return run
    nworkers = max(1, min(int(jobs), len(instances)))
    threads = max(1, cpu_count() // max(1, int(jobs)))
    ctx = multiprocessing.get_context("spawn")
    pending = deque(enumerate(instances))
    counts: Counter = Counter()
    workers: List[_Worker] = []
    csv_file = writer = None
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(csv_path, "w", newline="", encoding="utf-8")
        writer = csv.writer(csv_file)
    bar = tqdm(total=len(instances), unit="inst", disable=not progress, dynamic_ncols=True,
               desc=PROG, file=sys.stderr)
    start_failures = 0

    def timeout_of(inst: Instance) -> float:
        return min(inst.timeout, timeout_cap) if timeout_cap else inst.timeout

    def record(i: int, inst: Instance, out: Outcome):
        row = ResultRow(inst.onnx_rel or inst.onnx, inst.vnnlib_rel or inst.vnnlib, out.verdict,
                        out.run_time, 0.0, out.stats, out.message)
        if out.verdict == "sat" and check_ce:  # as VNN-COMP scores it: an invalid one is wrong
            try:
                row.ce_valid, why = check_counterexample(materialize(inst.onnx, cache_dir),
                                                         materialize(inst.vnnlib, cache_dir),
                                                         out.x, out.y)
            except Exception as exc:  # a checker failure counts against the answer
                row.ce_valid, why = False, f"checker failed: {type(exc).__name__}: {exc}"
            if not row.ce_valid:
                row.message = f"counterexample rejected: {why}; {row.message}"
                bar.write(f"{PROG}: {inst.onnx_rel} {inst.vnnlib_rel}: counterexample rejected: "
                          f"{why}", file=sys.stderr)
        run.rows.append(row)
        if writer is not None:
            writer.writerow(result_row_to_csv(row))
            csv_file.flush()
        if results_dir:
            with contextlib.suppress(Exception):
                write_results_file(Path(results_dir) / _results_name(i, inst),
                                   out if out.verdict != "sat" or out.x is not None else "error")
        if out.error_kind == "internal":
            bar.write(f"{PROG}: {inst.onnx_rel} {inst.vnnlib_rel}: internal error:\n{out.traceback}",
                      file=sys.stderr)
        counts[out.verdict] += 1
        bar.set_postfix_str(" ".join(f"{v} {counts[v]}" for v in VERDICTS if counts[v]), refresh=False)
        bar.update(1)
        if on_result is not None:
            on_result(i, row, out)

    def replace(w: _Worker):
        w.kill()
        workers[workers.index(w)] = _Worker(ctx, runner, threads)

    try:
        workers.extend(_Worker(ctx, runner, threads) for _ in range(nworkers))
        while pending or any(w.task for w in workers):
            for w in workers:  # dispatch
                if w.ready and w.task is None and pending and w.proc.is_alive():
                    i, inst = pending.popleft()
                    now = time.monotonic()
                    t = timeout_of(inst)
                    try:
                        w.conn.send((i, inst.onnx, inst.vnnlib, t, device, seed, cache_dir, options))
                    except (OSError, EOFError):
                        pending.appendleft((i, inst))
                        replace(w)
                        continue
                    w.task = (i, inst, now, now + t + grace)
            deadlines = [w.task[3] for w in workers if w.task]
            wait_s = 0.5 if not deadlines else max(0.0, min(0.5, min(deadlines) - time.monotonic()))
            mp_wait([w.conn for w in workers] + [w.proc.sentinel for w in workers], timeout=wait_s)
            for w in list(workers):
                dead = False
                try:
                    while w.conn.poll():
                        msg = w.conn.recv()
                        if msg[0] == "ready":
                            w.ready, start_failures = True, 0
                        elif msg[0] == "done" and w.task and msg[1] == w.task[0]:
                            i, inst = w.task[0], w.task[1]
                            w.task = None
                            record(i, inst, msg[2])
                        elif msg[0] == "fatal":
                            raise PoolError(f"worker cannot load the runner {runner!r}:\n{msg[1]}")
                except (EOFError, OSError):
                    dead = True
                if dead or not w.proc.is_alive():
                    w.proc.join(1)
                    code = w.proc.exitcode
                    if w.task:
                        i, inst, t0, _ = w.task
                        w.task = None
                        record(i, inst, Outcome("error", f"worker process died (exit code {code}) while "
                                                         "running this instance",
                                                run_time=time.monotonic() - t0, error_kind="died"))
                    elif not w.ready:
                        start_failures += 1
                        if start_failures >= 3:
                            raise PoolError(f"worker processes keep dying while starting (exit code {code})")
                    replace(w)
                elif w.task and time.monotonic() > w.task[3]:
                    i, inst, t0, _ = w.task
                    w.task = None
                    replace(w)
                    record(i, inst, Outcome("timeout", f"killed: still running {timeout_of(inst):g} s "
                                                       f"timeout + {grace:g} s grace after dispatch",
                                            run_time=time.monotonic() - t0, error_kind="killed"))
                elif not w.ready and time.monotonic() - w.started > startup_timeout:
                    raise PoolError(f"a worker did not start within {startup_timeout:g} s")
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        for w in workers:
            if w.task is None and w.ready and not run.interrupted:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 5
        for w in workers:
            if not run.interrupted:
                w.proc.join(max(0.0, deadline - time.monotonic()))
            w.kill()
        bar.close()
        if csv_file is not None:
            csv_file.close()
    return run


# --------------------------------------------------------------------------- command line

def _number(text: str, ok, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (ok(v) and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def _positive(text: str) -> float:
    return _number(text, lambda v: v > 0, "positive")


def _nonneg(text: str) -> float:
    return _number(text, lambda v: v >= 0, ">= 0")


def _posint(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return v


EPILOG = f"""\
results file (--results-file, VNN-COMP format):
  first line sat, unsat, timeout, unknown or error; after sat the counterexample
  ((X_0 v) (X_1 v) ... (Y_0 v) ...), X flattened in C order, values written so that
  Python's float() gives back the exact float32. The file is written atomically. It is
  set to "timeout" before the run starts (so a process killed by the harness leaves
  timeout, never a stale answer) and to "error" on any failure.

exit codes:
  0  sat, unsat, timeout or unknown (benchmark mode: the run completed)
  2  error: bad input (the message names the file/line/node; no traceback), an internal
     error (traceback printed: please report), or a bad command line
  130 interrupted (Ctrl-C)

benchmark mode (--benchmark FOLDER):
  FOLDER/instances.csv: no header, rows onnx,vnnlib,timeout_s, paths relative to FOLDER;
  .onnx.gz/.vnnlib.gz files (listed with or without .gz) are decompressed to a cache
  ($QNN_CACHE_DIR/gunzip or ~/.cache/qnn_plugin/gunzip). Instances run in --jobs worker
  processes (spawn), each importing torch once and using cpus // jobs torch threads. A
  worker still busy --grace seconds (default {DEFAULT_GRACE:g}) after the instance's timeout is
  killed, the instance recorded as timeout, and a fresh worker takes over; a worker that
  crashes records error. An instance that fails records error and the run goes on.
  The results CSV (no header) gets one row per instance as it finishes, in completion
  order, flushed at once:
      onnx, vnnlib, prepare_time, result, run_time, stats, message
  (the first five are VNN-COMP's results columns, paths as in instances.csv,
  prepare_time 0; stats is JSON: time_total, time_load, ..., boxes_bounded, ...).
  At the end (or on Ctrl-C: workers stopped, CSV kept) a summary table: verdict counts,
  total and median time, and the VNN-COMP 2025 score (+10 per correct sat/unsat, -150
  per wrong answer, 0 otherwise). With --expected CSV (rows onnx,vnnlib,expected with
  expected sat/unsat/unknown, or another results CSV) answers are checked against it;
  without it, sat/unsat answers are assumed correct and the table says so.

examples:
  {PROG} net.onnx prop.vnnlib --timeout 120 --results-file out.txt
  {PROG} --benchmark vnncomp_benchmarks/mybench --jobs 4 --timeout-cap 30 --filter prop_1
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=textwrap.fill(
            "Complete verification of a VNN-LIB property on an ONNX (quantized) network: prints sat "
            "(a counterexample exists, validated with onnxruntime), unsat (proved), timeout, unknown "
            "or error, then a line of statistics. Give ONNX and VNNLIB for one instance, or "
            "--benchmark FOLDER for a VNN-COMP benchmark folder.", 88))
    p.add_argument("onnx", nargs="?", metavar="ONNX", help="the network (.onnx or .onnx.gz)")
    p.add_argument("vnnlib", nargs="?", metavar="VNNLIB", help="the property (.vnnlib or .vnnlib.gz)")
    g = p.add_argument_group("single instance and benchmark")
    g.add_argument("--timeout", type=_positive, default=60.0, metavar="S",
                   help="seconds for the instance, counted from the start of the process "
                        "(interpreter and imports included; default 60)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="torch device (default: the verifier's choice)")
    g.add_argument("--seed", type=int, default=0, metavar="N", help="random seed for the attacks (default 0)")
    g.add_argument("--method", choices=("crown", "crown-ibp", "ibp"), default=None,
                   help="bound method inside branch and bound (default crown)")
    g.add_argument("--branch", choices=("auto", "input", "activation"), default=None,
                   help="what branch and bound splits: the input box, undecided hidden "
                        "activations (ReLU, quantization steps), or auto: activations for inputs "
                        "of more than 16 values (default)")
    g.add_argument("--split", choices=("strong", "gain", "widest"), default=None,
                   help="how an input dimension is chosen: strong branching (default), the "
                        "|A| x width estimate, or the widest edge")
    g.add_argument("--no-milp", dest="milp", action="store_false", default=None,
                   help="skip the integer programs (HiGHS) solved in child processes beside the "
                        "search where it branches on activations or the input has more than 16 "
                        "values: the exact one (integer networks) or the float one (others)")
    g.add_argument("--engine", choices=("plugin", "smt"), default="plugin",
                   help="plugin: the bound-based complete verifier (default); smt: the bit-exact "
                        "SMT baseline (bit-vector encoding of the integer semantics, solved by "
                        "bitwuzla or z3; power-of-two scales and quantized inputs only)")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="single instance: report the search's progress on stderr every 2 s")
    g.add_argument("--results-file", metavar="F",
                   help="write the VNN-COMP results file here (single instance); parent folders are created")
    m = p.add_argument_group("SMT engine (--engine smt; the speed-ups of Henzinger et al., AAAI 2021, "
                             "are on by default)")
    m.add_argument("--smt-backend", dest="backend", choices=("bitwuzla", "z3"), default=None,
                   help="bit-vector solver (default bitwuzla)")
    m.add_argument("--smt-no-dead-branches", dest="dead_branches", action="store_false",
                   default=None, help="encode every neuron's branches, also those its interval "
                                      "bounds decide")
    m.add_argument("--smt-fixed-width", dest="minimal_widths", action="store_false", default=None,
                   help="one bit width (the widest term's) for every term, not each term's own")
    m.add_argument("--smt-chain-sums", dest="balanced_sums", action="store_false", default=None,
                   help="sums as chains of additions, not balanced adder trees")
    b = p.add_argument_group("benchmark mode")
    b.add_argument("--benchmark", metavar="FOLDER",
                   help="run every instance of FOLDER/instances.csv (each with its own timeout)")
    b.add_argument("--jobs", "-j", type=_posint, default=1, metavar="N",
                   help="parallel worker processes (default 1)")
    b.add_argument("--results-csv", metavar="F",
                   help="results CSV, written as instances finish (default results-FOLDERNAME.csv in "
                        "the current directory)")
    b.add_argument("--results-dir", metavar="DIR",
                   help="also write one VNN-COMP results file per instance here (NNNN_ONNX__VNNLIB.txt, "
                        "NNNN = row order)")
    b.add_argument("--timeout-cap", type=_positive, metavar="S",
                   help="use min(instance timeout, S) for every instance")
    b.add_argument("--limit", type=_posint, metavar="K", help="run only the first K instances (after --filter)")
    b.add_argument("--filter", metavar="SUBSTR",
                   help="run only instances whose onnx or vnnlib path (as in instances.csv) contains SUBSTR")
    b.add_argument("--expected", metavar="CSV", help="expected verdicts for scoring (see below)")
    b.add_argument("--grace", type=_nonneg, default=DEFAULT_GRACE, metavar="S",
                   help=f"kill a worker this long after its instance's timeout (default {DEFAULT_GRACE:g})")
    b.add_argument("--runner", default=DEFAULT_RUNNER, metavar="MODULE:FUNCTION",
                   help="function called as f(onnx, vnnlib, timeout=, device=, seed=) -> VerifyResult "
                        f"in the workers, imported from sys.path or the current directory (default "
                        f"{DEFAULT_RUNNER}; for tests and other verifiers)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--no-check-ce", action="store_true",
                   help="do not check sat counterexamples as the VNN-COMP checker does (by "
                        "default each one is run through onnxruntime and the property, and a "
                        "rejected one scores -150)")
    return p


def _benchmark(args) -> int:
    try:
        # a row naming a missing file is that instance's error, recorded like any other
        instances = read_instances(args.benchmark, decompress=False, check_files=False)
        expected = read_expected(args.expected) if args.expected else None
    except QnnPluginError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for inst in instances:
        for path, rel in ((inst.onnx, inst.onnx_rel), (inst.vnnlib, inst.vnnlib_rel)):
            if not (os.path.isfile(path) or os.path.isfile(path + ".gz")):
                print(f"{PROG}: warning: instances.csv line {inst.line}: {rel}: no such file "
                      f"({path}); that instance will be an error", file=sys.stderr)
    if args.filter:
        instances = [i for i in instances if args.filter in i.onnx_rel or args.filter in i.vnnlib_rel]
    if args.limit:
        instances = instances[:args.limit]
    folder = Path(args.benchmark)
    name = (folder.parent if folder.is_file() else folder).resolve().name or "benchmark"
    csv_path = args.results_csv or f"results-{name}.csv"
    print(f"{PROG}: {len(instances)} instance(s) from {args.benchmark}, {args.jobs} job(s), "
          f"results CSV {csv_path}", file=sys.stderr)
    def terminate(signum, frame):  # `kill PID` stops like Ctrl-C: workers killed, CSV and summary kept
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, terminate)
    try:
        run = run_benchmark(instances, jobs=args.jobs, runner=args.runner, device=args.device, seed=args.seed,
                            timeout_cap=args.timeout_cap, grace=args.grace, csv_path=csv_path,
                            results_dir=args.results_dir, progress=not args.no_progress,
                            check_ce=not args.no_check_ce, options=_verifier_options(args))
    except PoolError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, old_term)
    title = f"{name}: {len(run.rows)} of {run.total} instances finished" + (" (interrupted)" if run.interrupted else "")
    print(summary_table(run.rows, expected, title=title), flush=True)
    return 130 if run.interrupted else 0


def _verifier_options(args) -> dict:
    """The chosen engine's options given on the command line (the others keep its defaults)."""
    names = SMT_OPTIONS if getattr(args, "engine", "plugin") == "smt" else PLUGIN_OPTIONS
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _salvage_results_file(argv: Sequence[str]) -> None:
    for i, a in enumerate(argv):
        path = argv[i + 1] if a == "--results-file" and i + 1 < len(argv) else (
            a.split("=", 1)[1] if a.startswith("--results-file=") else None)
        if path:
            with contextlib.suppress(Exception):
                write_results_file(path, "error")


def _parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.benchmark:
        if args.onnx or args.vnnlib:
            p.error("give either ONNX VNNLIB or --benchmark FOLDER, not both")
        if args.results_file:
            p.error("--results-file is for a single instance; use --results-csv/--results-dir with --benchmark")
    elif not (args.onnx and args.vnnlib):
        p.error("give ONNX and VNNLIB (one instance) or --benchmark FOLDER")
    other = PLUGIN_OPTIONS if args.engine == "smt" else SMT_OPTIONS
    given = [k for k in other if getattr(args, k, None) is not None]
    if given:
        p.error(f"option {given[0]!r} does not apply to --engine {args.engine}")
    if args.engine == "smt" and args.benchmark and args.runner == DEFAULT_RUNNER:
        args.runner = SMT_RUNNER
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``qnn-verify`` (see ``qnn-verify --help``); returns the exit code."""
    p = _parser()
    try:
        args = _parse(p, argv)
    except SystemExit as exc:
        if exc.code:  # a bad command line: still leave "error" in a results file we were given
            _salvage_results_file(sys.argv[1:] if argv is None else argv)
        raise
    return _benchmark(args) if args.benchmark else _single(args)


if __name__ == "__main__":
    sys.exit(main())
