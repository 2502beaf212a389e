"""The libraries some tests check exprgen against (JAX's gradients, PyTorch's DLPack): skipped where they
are not installed (the quick start's `make test`), required where EXPRGEN_REQUIRE_PEERS=1 (CI: .ci/run
installs the `peers` extra), so that CI never passes by skipping them."""

import importlib
import os

import pytest


def peer(name: str):
    if os.environ.get("EXPRGEN_REQUIRE_PEERS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed (pip install -e '.[peers]'); CI requires it")
