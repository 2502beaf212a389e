"""Shared test set-up: a private kernel cache unless the caller chose one (make test does), and the seed
of the fuzz tests' ci profile, shown in the header."""

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Set before exprgen is imported anywhere, so no test touches the user's ~/.cache/exprgen.
if "EXPRGEN_CACHE_DIR" not in os.environ:
    _private = tempfile.mkdtemp(prefix="exprgen-tests-")
    atexit.register(shutil.rmtree, _private, ignore_errors=True)
    os.environ["EXPRGEN_CACHE_DIR"] = os.path.join(_private, "cache")


def _commit() -> str | None:
    try:
        run = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


# tests/test_fuzz.py's ci profile draws its cases from this seed: the commit's, so a run is reproducible at
# a commit and the next commit draws other cases (a fixed one where there is no git checkout). Set here,
# before xdist starts its workers, so every worker draws from the same one; set it to rerun another's.
if not os.environ.get("EXPRGEN_FUZZ_SEED"):
    os.environ["EXPRGEN_FUZZ_SEED"] = _commit() or "no-commit"
    _SEED_FROM = "git rev-parse HEAD" if os.environ["EXPRGEN_FUZZ_SEED"] != "no-commit" else "no git checkout: fixed"
else:
    _SEED_FROM = "EXPRGEN_FUZZ_SEED"


def pytest_report_header(config):
    return (f"fuzz seed (ci profile): {os.environ['EXPRGEN_FUZZ_SEED']} ({_SEED_FROM}); "
            f"rerun these cases with EXPRGEN_FUZZ_SEED={os.environ['EXPRGEN_FUZZ_SEED']}")
