"""Where the package's data lives: ``templates/`` and ``ops/``.

In a wheel they are installed inside the package (``exprgen/templates``, ``exprgen/ops``); in a source
checkout (and an editable install) they sit at the repository's top level beside ``exprgen/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"exprgen data directory {name!r} is missing from {_PACKAGE}")
