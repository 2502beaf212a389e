"""Shared test set-up: a private kernel cache unless the caller chose one (make test does)."""

import os
import tempfile

# Set before exprgen is imported anywhere, so no test touches the user's ~/.cache/exprgen.
os.environ.setdefault("EXPRGEN_CACHE_DIR", os.path.join(tempfile.mkdtemp(prefix="exprgen-tests-"), "cache"))
