"""A function run in a forked child process, its result read back without blocking.

Solvers do not all stop on time by themselves (bitwuzla's sum normalisation ran 11 s past a
2.5 s limit without polling its terminator), and the verifier runs its integer program beside
the search, on the second core. A child process can be killed at any moment and runs in
parallel. A plain ``os.fork`` because benchmark workers are daemonic processes, which
multiprocessing forbids to have children. The child must not use torch (its thread pools do
not survive a fork); HiGHS's serial MIP solver runs in a child even after the parent ran it
(tested). POSIX only (fork, resource limits, poll): the project's machines are Linux.
"""
from __future__ import annotations

import contextlib
import math
import os
import pickle
import resource
import select
import signal
import time
from typing import Callable, Optional, Tuple


class Forked:
    """``fn()`` in a child. ``result`` becomes ('ok', value) or ('error', message) once the
    child has answered (see ``poll``/``wait``); ``stop()`` kills it if it has not."""

    def __init__(self, fn: Callable[[], object], cpu_seconds: float, nice: int = 0):
        """``nice``: added to the child's niceness (a lower CPU priority, for a side job)."""
        self.result: Optional[Tuple[str, object]] = None
        self._pid = None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # the child: compute, send, exit at once
            try:
                os.close(r)
                # should the parent die without killing it, the CPU limit still ends it
                if math.isfinite(cpu_seconds):
                    cpu = int(cpu_seconds) + 5
                    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
                if nice:
                    os.nice(nice)
                answer = _call(fn)
                with os.fdopen(w, "wb") as out:
                    pickle.dump(answer, out)
            finally:
                os._exit(0)
        os.close(w)
        self._pid, self._fd, self._data = pid, r, b""
        self._poller = select.poll()
        self._poller.register(r, select.POLLIN | select.POLLHUP)

    def poll(self, timeout: float = 0.0) -> bool:
        """Read what the child sent, waiting up to ``timeout`` seconds; True once it answered."""
        end = time.monotonic() + timeout
        while self.result is None and self._pid is not None:
            left = max(0.0, end - time.monotonic())
            if not self._poller.poll(left * 1000):
                return False
            chunk = os.read(self._fd, 1 << 16)
            if chunk:
                self._data += chunk
                continue
            try:
                self.result = pickle.loads(self._data)
            except Exception:                          # it died: out of memory, a crash, a kill
                self.result = ("error", "the child process died")
            self.stop()
        return self.result is not None

    def wait(self, seconds: float) -> bool:
        return self.poll(seconds)

    def stop(self) -> None:
        """Kill the child (if running) and reap it."""
        if self._pid is None:
            return
        os.close(self._fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        self._pid = None


def _call(fn):
    try:
        return "ok", fn()
    except BaseException as exc:
        return "error", f"{type(exc).__name__}: {exc}"
