"""The package's shape: leaf modules import nothing above them, the layering contracts hold, and the code
stays short and annotated (DESIGN.md's habits 8-9)."""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = REPO / "autotradeoff"


def loaded_after_import(module: str) -> set[str]:
    probe = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('autotradeoff')))"
    return set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split())


@pytest.mark.parametrize("module, allowed", [
    ("autotradeoff.knobs", {"autotradeoff", "autotradeoff.errors", "autotradeoff.knobs"}),
    ("autotradeoff.progress", {"autotradeoff", "autotradeoff.errors", "autotradeoff.progress"}),
    ("autotradeoff.space", {"autotradeoff", "autotradeoff.errors", "autotradeoff.knobs", "autotradeoff.space"}),
])
def test_leaf_modules_import_nothing_above_them(module, allowed):
    assert loaded_after_import(module) == allowed


def test_layering_contracts_hold():
    lint = subprocess.run([str(REPO / ".venv" / "bin" / "lint-imports") if (REPO / ".venv").is_dir() else "lint-imports",
                           "--config", str(REPO / "pyproject.toml")], capture_output=True, text=True, cwd=REPO)
    assert lint.returncode == 0, lint.stdout[-3000:]


def functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(REPO)}:{node.lineno}", node))
    return found


def test_no_module_is_over_400_lines_and_functions_stay_short():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long
    lengths = [node.end_lineno - node.lineno + 1 for _, node in functions()]
    assert statistics.median(lengths) < 10, statistics.median(lengths)


def test_public_functions_are_annotated():
    public = [(where, node) for where, node in functions() if not node.name.startswith("_")]
    def annotated(node):
        arguments = [a for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs) if a.arg not in ("self", "cls")]
        return node.returns is not None and all(a.annotation is not None for a in arguments)
    missing = [where for where, node in public if not annotated(node)]
    assert len(missing) <= 0.05 * len(public), f"{len(missing)} of {len(public)} not fully annotated: {missing[:20]}"
