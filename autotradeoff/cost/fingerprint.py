"""Hardware/software fingerprint stored with exported configs, so a cost is read against its machine."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

__all__ = ["fingerprint"]

_PACKAGES = ("autotradeoff", "torch", "optuna", "ray", "torch-geometric", "transformers")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def fingerprint() -> dict:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "cuda": torch.version.cuda if gpus else None,
        "packages": {name: v for name in _PACKAGES if (v := _version(name))},
    }
