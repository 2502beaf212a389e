"""The build backend: setuptools, plus kernels compiled at install time when EXPRGEN_PREBUILD=1.

    EXPRGEN_PREBUILD=1 pip install .            # the standard kernel set, for this machine's CPU
    EXPRGEN_PREBUILD=1 EXPRGEN_PREBUILD_TARGETS=cpu:x86-64-v2,cpu:x86-64-v3 pip wheel .   # portable kernels

The kernels go to ``exprgen/_prebuilt`` inside the installed package (in the source tree for an editable
install), a read-only tier the cache searches after the user's own. Prebuilding runs exprgen itself, so
its runtime dependencies become build requirements then, and only then (PEP 517's
``get_requires_for_build_*``). ``EXPRGEN_PREBUILD_OPS`` and ``EXPRGEN_PREBUILD_DTYPES`` narrow the set,
``EXPRGEN_PREBUILD_JOBS`` sets how many compilers run at once (default: the CPUs).
"""

from __future__ import annotations

import os
import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - every hook not redefined here is setuptools' own
from setuptools.command.build_py import build_py

RUNTIME = ["numpy>=1.26", "jinja2>=3.1", "cffi>=1.16", "tqdm>=4.60"]
NARROWING = {"--ops": "EXPRGEN_PREBUILD_OPS", "--dtypes": "EXPRGEN_PREBUILD_DTYPES", "-j": "EXPRGEN_PREBUILD_JOBS"}


def _wanted() -> bool:
    return os.environ.get("EXPRGEN_PREBUILD", "") not in ("", "0")


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + (RUNTIME if _wanted() else [])


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + (RUNTIME if _wanted() else [])


class BuildPy(build_py):
    """build_py, then ``exprgen prebuild`` into the package being built."""

    def run(self):
        super().run()
        if not _wanted():
            return
        if getattr(self, "editable_mode", False):
            importable = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the source tree
        else:
            importable = os.path.abspath(self.build_lib)
        into = os.path.join(importable, "exprgen", "_prebuilt")
        command = [sys.executable, "-m", "exprgen.tools.cli", "prebuild", "--into", into, "--no-progress",
                   "--target", os.environ.get("EXPRGEN_PREBUILD_TARGETS", "cpu")]
        for option, variable in NARROWING.items():
            if os.environ.get(variable):
                command += [option, os.environ[variable]]
        self.announce(f"prebuilding kernels: {' '.join(command)}", level=2)
        # Keep the build environment's own path (pip puts the build requirements there).
        path = os.pathsep.join(filter(None, [importable, os.environ.get("PYTHONPATH")]))
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": path})
        for directory, _, names in os.walk(into):  # the per-key locks matter only while building
            for name in names:
                if name.endswith(".lock"):
                    os.remove(os.path.join(directory, name))
