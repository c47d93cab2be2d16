"""Where the workplace's shared data lies (VNN-COMP benchmarks): ``$QNN_SHARED_DIR``, else the
first ``shared`` folder beside the repository or one of its parents, else the project
machines' ``/work/shared`` (so that a CI clone elsewhere still finds it). Tests that need it
skip when it is absent."""
import os
from pathlib import Path
from typing import Optional


def shared_dir() -> Optional[Path]:
    env = os.environ.get("QNN_SHARED_DIR")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in [*Path(__file__).resolve().parents, Path("/work")]:
        if (parent / "shared" / "vnncomp").is_dir():
            return parent / "shared"
    return None


SHARED = shared_dir()
VNNCOMP = SHARED / "vnncomp" if SHARED else None
