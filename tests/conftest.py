"""Shared test set-up: a private kernel cache unless the caller chose one (make test does)."""

import atexit
import os
import shutil
import tempfile

# Set before exprgen is imported anywhere, so no test touches the user's ~/.cache/exprgen.
if "EXPRGEN_CACHE_DIR" not in os.environ:
    _private = tempfile.mkdtemp(prefix="exprgen-tests-")
    atexit.register(shutil.rmtree, _private, ignore_errors=True)
    os.environ["EXPRGEN_CACHE_DIR"] = os.path.join(_private, "cache")
