"""Compare verifier configurations on the same VNN-COMP instances (``scripts/compare_engines.py``).

Every configuration (a runner plus its keyword options, picked by name from ``REGISTRY``) runs
on the same instances through ``cli_verify.run_benchmark``, with the same timeout cap. The
comparison is a soundness check as much as a timing table: two configurations that give
opposite definite verdicts (sat against unsat) on one instance mean one of them is wrong, and
so does a sat whose counterexample the VNN-COMP-style check rejects; both are reported as
failures (exit code 1).

Outputs in ``--out``: one results CSV per configuration and benchmark folder (the format of
``qnn-verify --benchmark``), ``per_instance.csv`` (verdict and time of every configuration side
by side), ``summary.md`` (the table, for the README) and ``cactus.png`` (instances solved within
a given time per instance, one line per configuration).

Timing columns: median and total over all instances a configuration ran (a timeout counts at
the time it took); ratios against the reference (the first configuration) only on instances
both solve, as config time / reference time, so below 1 means faster than the reference.
"""
from __future__ import annotations

import argparse
import csv
import signal
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .cli_verify import DEFAULT_RUNNER, SMT_RUNNER
from .cli_verify import _nonneg, _posint, _positive   # number arguments as qnn-verify checks them
from .vnncomp import ResultRow

PROG = "compare_engines"
PLUGIN_RUNNER, SMT_RUNNER = DEFAULT_RUNNER, SMT_RUNNER     # qnn-verify's two engines
#: run times are wall-clock seconds; ratios use at least this, so a 0 s row cannot divide by 0
MIN_TIME = 1e-3
#: how many instances a "solves that the reference does not" line names
MAX_NAMED = 10


class CompareError(ValueError):
    """Bad input to the comparison (unknown configuration, missing folder, ...)."""


@dataclass(frozen=True)
class Config:
    """A named way to run the verifier: ``runner`` ("module:function", as run_benchmark takes
    it) called with keyword ``options``."""

    name: str
    runner: str
    options: Dict[str, object] = field(default_factory=dict)
    description: str = ""


def _registry() -> Dict[str, Config]:
    smt_off = dict(dead_branches=False, minimal_widths=False, balanced_sums=False)
    entries = [
        Config("plugin", PLUGIN_RUNNER, {}, "bound-based verifier, defaults"),
        Config("plugin-no-milp", PLUGIN_RUNNER, {"milp": False}, "plugin without the integer program"),
        Config("smt", SMT_RUNNER, {"backend": "bitwuzla"}, "SMT baseline, bitwuzla, all speed-ups"),
        Config("smt-z3", SMT_RUNNER, {"backend": "z3"}, "SMT baseline, z3, all speed-ups"),
        Config("smt-no-dead-branches", SMT_RUNNER, {"dead_branches": False},
               "SMT, every neuron's branches encoded"),
        Config("smt-fixed-width", SMT_RUNNER, {"minimal_widths": False}, "SMT, one bit width for all terms"),
        Config("smt-chain-sums", SMT_RUNNER, {"balanced_sums": False}, "SMT, sums as chains of additions"),
        Config("smt-plain", SMT_RUNNER, smt_off, "SMT, all three speed-ups off"),
    ]
    return {c.name: c for c in entries}


REGISTRY: Dict[str, Config] = _registry()
DEFAULT_CONFIGS = "plugin,smt"


def parse_config_spec(text: str) -> Config:
    """``NAME=MODULE:FUNCTION`` -> a configuration running that function without options (for
    other verifiers and for tests)."""
    name, sep, runner = text.partition("=")
    name, runner = name.strip(), runner.strip()
    mod, colon, fn = runner.partition(":")
    if not sep or not name or not colon or not mod or not fn or "," in name:
        raise CompareError(f"--add-config must be NAME=MODULE:FUNCTION, got {text!r}")
    return Config(name, runner, {}, f"runner {runner}")


def parse_configs(text: str, registry: Optional[Dict[str, Config]] = None) -> List[Config]:
    """Comma-separated configuration names -> Configs, in order (the first is the reference)."""
    registry = REGISTRY if registry is None else registry
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CompareError("--configs names no configuration")
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise CompareError(f"unknown configuration {unknown[0]!r}; known: {', '.join(registry)}")
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise CompareError(f"configuration {dup[0]!r} named twice in --configs")
    return [registry[n] for n in names]


# --------------------------------------------------------------------------- results

class Key(NamedTuple):
    """One instance: benchmark label, row index in its (filtered) instance list, paths as in
    instances.csv. The index keeps two rows with the same files apart."""

    bench: str
    index: int
    onnx: str
    vnnlib: str

    def label(self, with_bench: bool = False) -> str:
        return (f"{self.bench}: " if with_bench else "") + f"{self.onnx} {self.vnnlib}"


#: configuration name -> instance -> its result row
Results = Dict[str, Dict[Key, ResultRow]]


def is_solved(row: ResultRow) -> bool:
    """A definite verdict that counts: unsat, or sat whose counterexample was not rejected."""
    return row.result == "unsat" or (row.result == "sat" and row.ce_valid is not False)


def _time(row: ResultRow) -> float:
    return max(float(row.run_time or 0.0), MIN_TIME)


@dataclass
class Disagreement:
    key: Key
    sat: List[str]    # configurations that answered sat
    unsat: List[str]  # ... and unsat


def disagreements(results: Results) -> List[Disagreement]:
    """Instances where one configuration says sat and another unsat (whatever the
    counterexample check said: the verdicts contradict each other either way)."""
    keys = sorted({k for rows in results.values() for k in rows})
    out = []
    for k in keys:
        sat = [c for c, rows in results.items() if k in rows and rows[k].result == "sat"]
        unsat = [c for c, rows in results.items() if k in rows and rows[k].result == "unsat"]
        if sat and unsat:
            out.append(Disagreement(k, sat, unsat))
    return out


def rejected_counterexamples(results: Results) -> List[Tuple[str, Key, ResultRow]]:
    """(configuration, instance, row) for every sat whose counterexample the check rejected."""
    return [(c, k, r) for c, rows in results.items() for k, r in sorted(rows.items())
            if r.result == "sat" and r.ce_valid is False]


@dataclass
class Summary:
    """One configuration's line of the table. Ratio fields are None for the reference itself
    and when no instance is solved by both."""

    name: str
    instances: int
    solved: int
    sat: int
    unsat: int
    timeout: int
    other: int  # unknown and error
    median_time: float
    total_time: float
    is_reference: bool = False
    both: int = 0
    median_ratio: Optional[float] = None
    ratio_of_medians: Optional[float] = None
    only_this: List[Key] = field(default_factory=list)       # solved here, not by the reference
    only_reference: List[Key] = field(default_factory=list)  # solved by the reference, not here


def summarize(results: Results, reference: str) -> List[Summary]:
    """One Summary per configuration of ``results`` (in its order), ratios against ``reference``."""
    if reference not in results:
        raise CompareError(f"reference {reference!r} has no results")
    ref = results[reference]
    ref_solved = {k for k, r in ref.items() if is_solved(r)}
    out = []
    for name, rows in results.items():
        res = [r.result for r in rows.values()]
        times = [float(r.run_time or 0.0) for r in rows.values()]
        solved = {k for k, r in rows.items() if is_solved(r)}
        s = Summary(name, len(rows), len(solved), res.count("sat"), res.count("unsat"),
                    res.count("timeout"), sum(v not in ("sat", "unsat", "timeout") for v in res),
                    statistics.median(times) if times else 0.0, sum(times),
                    is_reference=name == reference)
        both = sorted(solved & ref_solved)
        s.both = len(both)
        if both and not s.is_reference:
            s.median_ratio = statistics.median(_time(rows[k]) / _time(ref[k]) for k in both)
            s.ratio_of_medians = (statistics.median(_time(rows[k]) for k in both)
                                  / statistics.median(_time(ref[k]) for k in both))
        s.only_this = sorted(solved - ref_solved)
        s.only_reference = sorted(k for k in ref_solved - solved if k in rows)
        out.append(s)
    return out


# --------------------------------------------------------------------------- reports

COLUMNS = ("configuration", "solved", "sat", "unsat", "timeout", "unknown/error", "median time",
           "total time", "both solve", "median ratio", "ratio of medians")


def _ratio(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3g}x"


def table_cells(summaries: Sequence[Summary]) -> List[List[str]]:
    rows = []
    for s in summaries:
        ref = ["(reference)", "", ""] if s.is_reference else [str(s.both), _ratio(s.median_ratio),
                                                              _ratio(s.ratio_of_medians)]
        rows.append([s.name, f"{s.solved}/{s.instances}", str(s.sat), str(s.unsat), str(s.timeout),
                     str(s.other), f"{s.median_time:.2f} s", f"{s.total_time:.1f} s", *ref])
    return rows


def format_table(summaries: Sequence[Summary], markdown: bool = False) -> str:
    """The table as aligned text or as Markdown (first column left-aligned, the rest right)."""
    rows = table_cells(summaries)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|:--|" + "--:|" * (len(COLUMNS) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _named(keys: Sequence[Key], with_bench: bool) -> str:
    names = [k.label(with_bench) for k in keys[:MAX_NAMED]]
    more = f"; and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
    return (": " + "; ".join(names) + more) if names else ""


def difference_lines(summaries: Sequence[Summary], with_bench: bool = False) -> List[str]:
    """Per non-reference configuration: what it solves that the reference does not, and back."""
    ref = next(s.name for s in summaries if s.is_reference)
    out = []
    for s in summaries:
        if s.is_reference:
            continue
        out.append(f"instances the {s.name} solves that the reference ({ref}) does not: "
                   f"{len(s.only_this)}{_named(s.only_this, with_bench)}")
        out.append(f"instances the reference ({ref}) solves that the {s.name} does not: "
                   f"{len(s.only_reference)}{_named(s.only_reference, with_bench)}")
    return out


def failure_lines(results: Results, with_bench: bool = False) -> List[str]:
    """One FAILURE line per contradiction and per rejected counterexample."""
    out = [f"FAILURE: contradictory verdicts on {d.key.label(with_bench)}: sat by {', '.join(d.sat)}; "
           f"unsat by {', '.join(d.unsat)}" for d in disagreements(results)]
    out += [f"FAILURE: {c} answered sat on {k.label(with_bench)} with a rejected counterexample: "
            f"{r.message}" for c, k, r in rejected_counterexamples(results)]
    return out


def error_lines(results: Results, with_bench: bool = False) -> List[str]:
    """Per configuration with ``error`` rows: how many and the first message, so that an engine
    failing everywhere (a crash, an unsupported model) does not pass for a slow one."""
    out = []
    for c, rows in results.items():
        errs = [(k, r) for k, r in sorted(rows.items()) if r.result == "error"]
        if errs:
            k, r = errs[0]
            msg = " ".join(str(r.message).split())[:200]
            out.append(f"note: {c}: {len(errs)} instance(s) ended in error; first, on "
                       f"{k.label(with_bench)}: {msg}")
    return out


def cactus_plot(results: Results, path, title: str = "", timeout_cap: Optional[float] = None) -> None:
    """Save the cactus plot: for each configuration, the number of instances solved (y) within a
    given time per instance (x, log scale), as VNN-COMP reports draw it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    all_times = []
    for name, rows in results.items():
        times = sorted(_time(r) for r in rows.values() if is_solved(r))
        all_times += times
        # a step at each solve time: y(t) = number solved within t
        ax.step([times[0] if times else MIN_TIME] + times, [0] + list(range(1, len(times) + 1)),
                where="post", label=f"{name} ({len(times)})", linewidth=1.6)
    ax.set_xscale("log")
    ends = all_times + ([timeout_cap] if timeout_cap else [])
    lo = min(all_times) / 1.5 if all_times else MIN_TIME
    hi = max(ends) * 1.5 if ends else 1.0
    ax.set_xlim(lo, max(hi, lo * 10))  # at least a decade, also when all times are alike
    if timeout_cap:
        ax.axvline(timeout_cap, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_per_instance_csv(results: Results, path) -> None:
    """benchmark, onnx, vnnlib, then verdict and time of each configuration: the whole
    comparison in one sheet."""
    keys = sorted({k for rows in results.values() for k in rows})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["benchmark", "onnx", "vnnlib"] + [f"{c}_{x}" for c in results for x in ("result", "time")])
        for k in keys:
            cells = [k.bench, k.onnx, k.vnnlib]
            for rows in results.values():
                r = rows.get(k)
                cells += [r.result, f"{r.run_time:.3f}"] if r else ["", ""]
            w.writerow(cells)


# --------------------------------------------------------------------------- running

@dataclass
class Benchmark:
    label: str
    folder: Path
    instances: list


def load_benchmarks(folders: Sequence[str], filter_: Optional[str] = None,
                    limit: Optional[int] = None) -> List[Benchmark]:
    """Read each folder's instances.csv, apply ``filter_`` (substring of the onnx or vnnlib path)
    and ``limit`` (first K) per folder. Labels are the folder names, made unique."""
    from .vnncomp import VnnCompFormatError, read_instances

    out, seen = [], set()
    for f in folders:
        folder = Path(f)
        if not folder.exists():
            raise CompareError(f"{f}: no such folder")
        if folder.is_dir() and not (folder / "instances.csv").is_file():
            raise CompareError(f"{f}: no instances.csv in this folder (expected a VNN-COMP benchmark folder)")
        try:
            insts = read_instances(folder, decompress=False)
        except VnnCompFormatError as exc:
            raise CompareError(str(exc)) from None
        if filter_:
            insts = [i for i in insts if filter_ in i.onnx_rel or filter_ in i.vnnlib_rel]
        if limit:
            insts = insts[:limit]
        base = (folder.parent if folder.is_file() else folder).resolve().name or "benchmark"
        label, n = base, 2
        while label in seen:
            label, n = f"{base}-{n}", n + 1
        seen.add(label)
        out.append(Benchmark(label, folder, insts))
    return out


def run_all(benchmarks: Sequence[Benchmark], configs: Sequence[Config], out_dir: Path, *,
            jobs: int = 1, timeout_cap: Optional[float] = None, grace: Optional[float] = None,
            progress: bool = True, log=sys.stderr) -> Tuple[Results, bool]:
    """Run every configuration on every benchmark (configuration by configuration, so one
    engine's workers never compete with another's). Returns the results and whether the run
    was interrupted (Ctrl-C: what finished is kept, later configurations are not run)."""
    results: Results = {c.name: {} for c in configs}
    try:
        _run_all(results, benchmarks, configs, out_dir, jobs, timeout_cap, grace, progress, log)
    except KeyboardInterrupt:  # between two pools (inside one, run_benchmark handles it)
        return results, True
    return results, False


def _run_all(results, benchmarks, configs, out_dir, jobs, timeout_cap, grace, progress, log):
    from .cli_verify import DEFAULT_GRACE, run_benchmark

    for c in configs:
        for b in benchmarks:
            csv_path = out_dir / f"results-{b.label}-{c.name}.csv"
            print(f"{PROG}: {c.name} on {b.label}: {len(b.instances)} instance(s), results {csv_path}",
                  file=log, flush=True)
            rows = results[c.name]

            def keep(i, row, out, b=b, rows=rows):
                rows[Key(b.label, i, row.onnx, row.vnnlib)] = row

            run = run_benchmark(b.instances, jobs=jobs, runner=c.runner, timeout_cap=timeout_cap,
                                grace=DEFAULT_GRACE if grace is None else grace, csv_path=csv_path,
                                progress=progress, check_ce=True, options=dict(c.options),
                                on_result=keep)
            if run.interrupted:
                raise KeyboardInterrupt


# --------------------------------------------------------------------------- command line



def _parser() -> argparse.ArgumentParser:
    configs = "\n".join(f"  {c.name:<22} {c.description}" for c in REGISTRY.values())
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run several verifier configurations on the same VNN-COMP instances and compare them: "
            "verdict counts, times, time ratios against the first configuration, a cactus plot. "
            "Contradictory verdicts (sat against unsat) and rejected counterexamples are reported "
            "as FAILURE lines and make the exit code 1.", 88),
        epilog=f"configurations (--configs):\n{configs}\n\nexit codes: 0 all consistent, 1 a FAILURE, "
               "2 bad input, 130 interrupted")
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="VNN-COMP benchmark folder(s) with instances.csv")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, metavar="A,B,...",
                   help=f"configurations to run, the first is the reference (default {DEFAULT_CONFIGS})")
    p.add_argument("--add-config", action="append", default=[], metavar="NAME=MODULE:FUNCTION",
                   help="define another configuration (a runner as qnn-verify --runner takes it), "
                        "to be named in --configs; repeatable")
    p.add_argument("--timeout-cap", type=_positive, metavar="S",
                   help="use min(instance timeout, S) for every instance and configuration")
    p.add_argument("--jobs", "-j", type=_posint, default=1, metavar="N", help="parallel worker processes (default 1)")
    p.add_argument("--limit", type=_posint, metavar="K",
                   help="only the first K instances of each folder (after --filter)")
    p.add_argument("--filter", metavar="SUBSTR", help="only instances whose onnx or vnnlib path contains SUBSTR")
    p.add_argument("--out", default="compare-results", metavar="DIR", help="output folder (default compare-results/)")
    p.add_argument("--grace", type=_nonneg, default=None, metavar="S",
                   help="kill a worker this long after its instance's timeout (default: qnn-verify's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``scripts/compare_engines.py`` (see ``--help``); returns the exit code."""
    p = _parser()
    args = p.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2

    try:
        registry = dict(REGISTRY)
        for spec in args.add_config:
            c = parse_config_spec(spec)
            if c.name in registry:
                raise CompareError(f"--add-config: configuration {c.name!r} already exists")
            registry[c.name] = c
        configs = parse_configs(args.configs, registry)
        benchmarks = load_benchmarks(args.folders, args.filter, args.limit)
    except CompareError as exc:
        return fail(str(exc))
    if not any(b.instances for b in benchmarks):
        return fail("no instances to run" + (f" (none matches --filter {args.filter!r})" if args.filter else ""))
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot create --out {out_dir}: {exc}")

    from .cli_verify import PoolError

    def terminate(signum, frame):  # `kill PID` stops like Ctrl-C: report what finished
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, terminate)
    try:
        results, interrupted = run_all(benchmarks, configs, out_dir, jobs=args.jobs,
                                       timeout_cap=args.timeout_cap, grace=args.grace,
                                       progress=not args.no_progress)
    except PoolError as exc:
        return fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, old_term)

    results = {c: rows for c, rows in results.items() if rows}
    if not results:
        print(f"{PROG}: interrupted before any instance finished", file=sys.stderr)
        return 130
    reference = configs[0].name
    if reference not in results:
        print(f"{PROG}: interrupted before the reference ({reference}) finished an instance", file=sys.stderr)
        return 130
    with_bench = len(benchmarks) > 1
    summaries = summarize(results, reference)
    n = sum(len(b.instances) for b in benchmarks)
    cap = f", timeout cap {args.timeout_cap:g} s" if args.timeout_cap else ", instance timeouts"
    setting = (f"{n} instance(s) from {', '.join(b.label for b in benchmarks)}{cap}, {args.jobs} job(s); "
               f"reference {reference}" + (" (interrupted: partial results)" if interrupted else ""))
    failures = failure_lines(results, with_bench)
    diffs = difference_lines(summaries, with_bench) + error_lines(results, with_bench)

    print(f"\n{setting}\n")
    print(format_table(summaries))
    print()
    for line in diffs:
        print(line)
    for line in failures:
        print(line)
    if not failures:
        print("no contradictory verdicts and no rejected counterexamples")

    md = [f"{setting}.", "", format_table(summaries, markdown=True), "",
          "Times: median and total over all instances; ratios (configuration / reference) on the "
          "instances both solve.", ""]
    md += [f"* {line}" for line in diffs + (failures or ["no contradictory verdicts and no rejected counterexamples"])]
    (out_dir / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    write_per_instance_csv(results, out_dir / "per_instance.csv")
    cactus_plot(results, out_dir / "cactus.png", title=setting.split(";")[0], timeout_cap=args.timeout_cap)
    print(f"\n{PROG}: wrote {out_dir}/summary.md, cactus.png, per_instance.csv and the results CSVs",
          file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failures else 0
