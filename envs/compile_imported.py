"""Write .pyc files for the modules dataforge actually runs, not for all of site-packages.

setup.sh runs this with `.venv`'s interpreter, beside the Label Studio migration (one core each).
It imports every module that dataforge, the first-party plugins, the tests and the benchmarks name
in an import statement (at module level or inside a function), so each of those modules and
everything they import gets its bytecode written once: about 5,000 of site-packages' 20,000 files,
in about 17 s of one core. `uv sync --compile-bytecode` compiles all 20,000 (about 60 s of CPU on
2 cores), mostly packages nothing here imports; without either, every process of a test run where
PYTHONDONTWRITEBYTECODE is set compiles the same modules again.

Usage: .venv/bin/python envs/compile_imported.py      prints how many of the named modules imported
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("dataforge", "plugins", "tests", "benchmarks")


def named_modules() -> list[str]:
    """Every absolute module name an import statement in SOURCES names, and dataforge's own modules."""
    names: set[str] = set()
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
    import dataforge

    names.update(m.name for m in pkgutil.walk_packages(dataforge.__path__, "dataforge."))
    return sorted(n for n in names if not n.endswith("__main__"))


def main() -> int:
    sys.dont_write_bytecode = False  # even where PYTHONDONTWRITEBYTECODE is set: writing them is the point
    os.environ.setdefault("MPLBACKEND", "Agg")
    names = named_modules()
    imported = 0
    for name in names:
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:  # a tests-local helper, a module of an extra not installed: nothing to compile
            pass
    print(f"imported {imported} of {len(names)} named modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
