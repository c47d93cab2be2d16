"""Tests of the benchmark scripts: each runs a script as a user would (its numbers are read
from its printed table, never checked by a timed test)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "vnncomp_benchmarks" / "qnn_digits"


def run_script(name: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python scripts/NAME ARGS...`` from the repository, output captured as text."""
    return subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "scripts" / name),
                           *map(str, args)], capture_output=True, text=True, timeout=timeout)
