"""The SMT speed-up benchmark script runs end to end (smoke test on two instances; its numbers
are read from its printed table, never checked by a timed test)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_smt_speedups.py"


def test_two_instances_give_a_table_and_a_plot(tmp_path):
    out = subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), "--instances", "2",
                          "--sizes", "4,6,3", "--timeout", "10", "--configs", "smt,smt-plain",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "smt-plain" in out.stdout and "no contradictory verdicts" in out.stdout
    assert (tmp_path / "cactus.png").is_file() and (tmp_path / "summary.md").is_file()
    assert len((tmp_path / "instances" / "instances.csv").read_text().splitlines()) == 2


def test_bad_sizes_are_refused(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "4,x", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--sizes" in out.stderr
