"""The multipliers' benchmark script runs end to end."""
from . import DIGITS, run_script

SCRIPT = "bench_lagrangian.py"


def test_an_instance_that_reaches_the_search_gives_a_row():
    # digits_qat, sample 5 at 8 pixel levels: the attacks and the root bound leave it open
    out = run_script(SCRIPT, DIGITS, "--match", "digits_qat.onnx vnnlib/prop_5_eps8",
                     "--timeout", "15")   # 8 s ran out before the search on a loaded machine
    assert out.returncode == 0, out.stderr[-2000:]
    row = [ln for ln in out.stdout.splitlines() if ln.startswith("| digits_qat prop_5_eps8")]
    assert len(row) == 1, out.stdout
    cells = [c.strip() for c in row[0].split("|")[1:-1]]
    assert cells[1] in ("sat", "unsat", "timeout") and int(cells[3]) > 0
    assert int(cells[5].split("/")[1]) > 0          # the multipliers were given polytopes
    assert "reached the search" in out.stdout


def test_a_missing_folder_is_an_error(tmp_path):
    out = run_script(SCRIPT, tmp_path / "nowhere", timeout=120)
    assert out.returncode != 0 and "nowhere" in out.stderr
