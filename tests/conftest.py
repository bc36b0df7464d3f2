"""Shared fixtures: real data from AUTOTRADEOFF_DATA (../shared/data by default), a private cache,
small real search spaces written inline, and a runner for the installed ``autotradeoff`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DATA = Path(os.environ.get("AUTOTRADEOFF_DATA") or REPO.parent / "shared" / "data")
CLI = Path(sys.executable).parent / "autotradeoff"

SMALL_CORA = """\
task: cora
objectives: {val_accuracy: max, latency_ms: min}
knobs:
  model: {choices: [gcn, sage]}
  layers: {low: 1, high: 2}
  hidden: {low: 4, high: 32, log: true}
  dropout: {low: 0.0, high: 0.8}
  lr: {low: 0.005, high: 0.05, log: true}
  epochs: {low: 5, high: 30}
fidelity: {latency_repeats: 5, latency_warmup: 1}
"""


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    if not (DATA / "planetoid" / "Cora" / "raw").is_dir():
        pytest.exit(f"test data not found: set AUTOTRADEOFF_DATA (looked in {DATA})", returncode=2)
    env = {
        "AUTOTRADEOFF_DATA": str(DATA),
        "AUTOTRADEOFF_CACHE": str(tmp_path_factory.mktemp("cache")),
        "AUTOTRADEOFF_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
        # plugin tasks used by the tests live in tests/; Ray workers inherit this path
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path.insert(0, str(TESTS))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def small_cora_space(tmp_path) -> Path:
    path = tmp_path / "cora-small.yaml"
    path.write_text(SMALL_CORA)
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``autotradeoff`` command as a user would."""
    return subprocess.run([str(CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
