"""Technique registry: name -> lazily imported class ("module:attribute"). A technique can also be
given by import path, ``mypackage.techniques:EdgeSampler``, as tasks can (``--task module:attr``)."""

from __future__ import annotations

import importlib
from functools import cache

from autotradeoff.errors import UsageError
from autotradeoff.techniques.base import Pipeline, Technique

__all__ = ["TECHNIQUES", "Technique", "Pipeline", "get_technique", "technique_names"]

TECHNIQUES: dict[str, str] = {
    "axformer": "autotradeoff.techniques.axformer:AxFormer",
    "tokendrop": "autotradeoff.techniques.tokendrop:TokenDrop",
    "icpc": "autotradeoff.techniques.icpc:ICPC",
    "fastrain": "autotradeoff.techniques.fastrain:Fastrain",
    "geeni": "autotradeoff.techniques.geeni:Geeni",
}


def technique_names() -> list[str]:
    return sorted(TECHNIQUES)


@cache
def get_technique(name: str) -> Technique:
    """The technique called ``name`` (a registry name or ``module:attribute``); UsageError lists choices."""
    target = TECHNIQUES.get(name) or (name if ":" in name else None)
    if target is None:
        raise UsageError(f"unknown technique {name!r}; choices: {', '.join(technique_names())} (or module:attribute)")
    module_name, _, attribute = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
        technique = found if isinstance(found, Technique) else found()
    except Exception as exc:  # ImportError, AttributeError, or the module's own failure
        raise UsageError(f"cannot load technique {name!r} from {target!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(technique, Technique):
        raise UsageError(f"technique {name!r}: {target!r} did not give a Technique; got {type(technique).__name__}")
    if not technique.name or "." in technique.name:
        raise UsageError(f"technique {name!r}: its name must be non-empty and without dots; got {technique.name!r}")
    return technique
