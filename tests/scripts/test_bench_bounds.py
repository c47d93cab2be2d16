"""The benchmark script runs (smoke test of --quick; its numbers are not checked here: benchmarks
are read from its printed table, never from timed tests)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_bounds.py"


def test_quick_run_prints_a_table():
    out = subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), "--quick", "--models", "mlp",
                          "--methods", "ibp,crown", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| batch | forward boxes/s |" in out.stdout and "machine:" in out.stdout
