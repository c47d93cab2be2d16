"""Forked: a function in a child process, read back without blocking, killed on demand."""
import os
import time

import numpy as np

from qnn_plugin.forked import Forked


def test_value_comes_back():
    job = Forked(lambda: {"a": np.arange(3).tolist()}, 10)
    assert job.wait(10)
    assert job.result == ("ok", {"a": [0, 1, 2]})


def test_no_cpu_limit():
    """An infinite budget (verify(timeout=math.inf)) sets no CPU limit instead of failing."""
    import math
    import resource

    job = Forked(lambda: resource.getrlimit(resource.RLIMIT_CPU)[0], math.inf)
    assert job.wait(10)
    assert job.result == ("ok", resource.getrlimit(resource.RLIMIT_CPU)[0])


def test_poll_does_not_block_and_stop_kills():
    job = Forked(lambda: time.sleep(30), 40)
    t = time.monotonic()
    assert not job.poll()
    assert not job.wait(0.2)
    job.stop()
    assert time.monotonic() - t < 5
    assert job.result is None
    job.stop()   # a second stop is harmless


def test_exception_and_death_are_errors():
    def fail():
        raise ValueError("bad input")

    job = Forked(fail, 10)
    assert job.wait(10)
    assert job.result == ("error", "ValueError: bad input")
    job = Forked(lambda: os._exit(3), 10)
    assert job.wait(10)
    assert job.result == ("error", "the child process died")


def test_highs_runs_in_a_child_after_the_parent_ran_it():
    """HiGHS keeps process-wide state; a child forked after the parent solved a MIP must
    still solve one (the verifier's exact program runs this way)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    def solve():
        res = milp(-np.ones(4), integrality=np.ones(4), bounds=Bounds(0, 3),
                   constraints=LinearConstraint(np.ones((1, 4)), -np.inf, 5.5))
        return float(res.fun)

    assert solve() == -5.0
    job = Forked(solve, 20)
    assert job.wait(20)
    assert job.result == ("ok", -5.0)


def test_nice_lowers_the_childs_priority():
    base = os.nice(0)
    job = Forked(lambda: os.nice(0), 10, nice=5)
    assert job.wait(10)
    assert job.result == ("ok", min(19, base + 5))
