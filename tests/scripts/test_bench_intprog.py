"""The integer-program benchmark script runs end to end."""
from . import DIGITS, run_script

SCRIPT = "bench_intprog.py"


def test_one_instance_gives_a_row_and_a_summary():
    # digits_qat, sample 7 at 8 pixel levels: sat, the integer variant finds it at its root
    out = run_script(SCRIPT, DIGITS, "--match", "prop_7_eps8", "--timeout", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    row = [ln for ln in out.stdout.splitlines() if ln.startswith("| digits_qat prop_7_eps8")]
    assert len(row) == 1 and row[0].split("|")[5].strip() == "feasible", out.stdout
    assert "first to decide" in out.stdout


def test_a_missing_folder_is_an_error(tmp_path):
    out = run_script(SCRIPT, tmp_path / "nowhere", timeout=120)
    assert out.returncode != 0 and "nowhere" in out.stderr


def test_programs_are_written_as_mps(tmp_path):
    """--write-mps gives other solvers the same program: HiGHS reads it back and finds the
    counterexample (t <= 1/2) of the sat instance."""
    import highspy

    out = run_script(SCRIPT, DIGITS, "--match", "prop_7_eps8", "--write-mps", tmp_path,
                     "--no-solve")
    assert out.returncode == 0, out.stderr[-2000:]
    files = sorted(tmp_path.glob("digits_qat_prop_7_eps8_p*.mps"))
    assert len(files) == 1, out.stdout
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", 60.0)
    assert h.readModel(str(files[0])) == highspy.HighsStatus.kOk
    assert highspy.HighsVarType.kInteger in list(h.getLp().integrality_)
    h.setOptionValue("objective_target", 0.5)   # stop at the first counterexample
    h.run()
    info = h.getInfo()
    assert info.mip_node_count >= 0 and info.primal_solution_status == 2
    assert info.objective_function_value <= 0.5
