#!/usr/bin/env python3
"""Developer entry point that needs nothing but Python 3.11+.

    python3 dev.py demo    # the main job on the bundled sample data
    python3 dev.py test    # the test suite (what CI runs)
    python3 dev.py lint    # ruff + mypy + import contracts (lint-imports) + no private imports
    python3 dev.py bench   # the benchmarks under bench/

It builds `.venv` from pyproject.toml on first use (and again when pyproject.toml changes).
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".pyproject.sha256"


def ensure_venv() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing the project, its dev dependencies and the excel extra into .venv ...", flush=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-e", f"{ROOT}[dev,excel]"],
        check=True,
    )
    STAMP.write_text(digest)


def run(*args: str) -> int:
    return subprocess.call(list(args), cwd=ROOT)


def private_imports() -> int:
    """Fail on a private name (`_x`, not a dunder) taken from another etl module: `from etl.a
    import _x`, or `mod._x` where `mod` was imported from etl. What is shared is public."""
    found = []
    for path in sorted([*ROOT.glob("etl/**/*.py"), *ROOT.glob("tests/**/*.py"),
                        *ROOT.glob("bench/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules = set()  # local names bound to an etl module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("etl"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}")
                    base = ROOT / (node.module or "").replace(".", "/") / alias.name
                    if base.with_suffix(".py").exists() or base.is_dir():
                        modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("etl") and alias.asname:
                        modules.add(alias.asname)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    for line in found:
        print(f"private name imported across modules: {line}")
    return 1 if found else 0


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "help"
    rest = argv[1:]
    if cmd not in {"demo", "test", "lint", "bench", "venv"}:
        print(__doc__)
        return 0 if cmd == "help" else 2
    ensure_venv()
    py = str(BIN / "python")
    if cmd == "venv":
        return 0
    if cmd == "test":
        return run(py, "-m", "pytest", *rest)
    if cmd == "lint":
        return (run(py, "-m", "ruff", "check", "etl", "tests", "bench") or run(py, "-m", "mypy")
                or run(str(BIN / "lint-imports")) or private_imports())
    if cmd == "bench":
        return run(py, "bench/run_all.py", *rest)
    # demo: the main job on the sample data
    return run(py, "-m", "etl", "demo", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
