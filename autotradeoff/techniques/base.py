"""The Technique interface and the pipeline it plugs into.

A task runs a trial as a pipeline of named stages (its *family*'s protocol: the text, graph and
vision tasks each document theirs). The stages are plain functions in a ``Pipeline``; a technique
declares the stages it acts on and, in ``install``, wraps them. With all of its knobs at their
defaults ("off") a technique must leave every stage as it found it: the trial is then the task's
plain baseline (the conformance suite checks this for every task and technique).

Knobs are declared with local names (``drop_rate``); a task sees them namespaced by the technique,
``tokendrop.drop_rate``, so two techniques never collide. A knob's ``stage`` says whether it shapes
the trained weights (``data``/``train``): those knobs, and nothing listed by hand, key every cache of
trained models (``training_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from autotradeoff.knobs import TRAINING_STAGES, Knob

__all__ = ["Technique", "Pipeline"]


class Pipeline:
    """A task's stages as replaceable functions, read as attributes (``pipeline.approximate(model)``).

    ``task_config``: the task's own knob values (read-only), for techniques whose work depends on them.
    ``context``: facts of the task a stage may need (e.g. the full patch grid). ``dry``: the pipeline
    runs before training (``Task.precheck``) on untrained models; a technique whose result would depend
    on the trained weights adds what that makes unknown (``"size"``, ``"inference"``) to ``unknown``.
    """

    def __init__(self, stages: dict[str, Callable[..., Any]] | None = None, *, task_config: dict[str, Any] | None = None,
                 context: dict[str, Any] | None = None, dry: bool = False) -> None:
        self._stages = dict(stages or {})
        self.task_config = MappingProxyType(dict(task_config or {}))
        self.context = MappingProxyType(dict(context or {}))
        self.dry, self.unknown = dry, set()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        stages = self.__dict__.get("_stages", {})
        if name in stages:
            return stages[name]
        raise AttributeError(f"pipeline has no stage {name!r}; stages: {', '.join(stages)}")

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self._stages)

    def define(self, stages: dict[str, Callable[..., Any]]) -> None:
        """Add the task's plain stages (a stage that calls another reads it from the pipeline, so it calls
        whatever a technique made of it)."""
        self._stages.update(stages)

    def wrap(self, stage: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        """Replace ``stage`` by ``wrapper(current function)``: the wrapper may call the function it wraps."""
        if stage not in self._stages:
            raise ValueError(f"pipeline has no stage {stage!r}; stages: {', '.join(self._stages)}")
        self._stages[stage] = wrapper(self._stages[stage])


class Technique:
    """One efficiency technique: its knobs, the stages of one task family it acts on, and ``install``.

    ``saves``: metrics its most ``aggressive`` setting lowers against the baseline (empty: the technique
    does not promise to lower a cost the task measures, e.g. it buys accuracy).
    """

    name: str = ""
    family: str = ""  # the task family whose pipeline it plugs into: "text", "graph" or "vision"
    description: str = ""
    knobs: dict[str, Knob] = {}
    stages: tuple[str, ...] = ()
    saves: tuple[str, ...] = ()
    aggressive: dict[str, Any] = {}

    def off(self) -> dict[str, Any]:
        """Every knob at its default: the technique does nothing."""
        return {name: knob.default for name, knob in self.knobs.items()}

    def key(self, knob: str) -> str:
        """The namespaced name a task and a search space use: ``<technique>.<knob>``."""
        return f"{self.name}.{knob}"

    def own(self, config: dict[str, Any]) -> dict[str, Any]:
        """This technique's knob values out of a task config, by their local names."""
        return {name: config[self.key(name)] for name in self.knobs}

    def is_off(self, own: dict[str, Any]) -> bool:
        """True when ``own`` changes nothing (the default: every knob at its default)."""
        return own == self.off()

    def trains(self) -> bool:
        """Does any knob shape the trained weights?"""
        return any(knob.stage in TRAINING_STAGES for knob in self.knobs.values())

    def training_key(self, own: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """What of ``own`` shapes the trained weights: part of every trained-model cache key. Override to
        map equivalent settings to one key (two settings giving the same training levels, say)."""
        return {name: own[name] for name, knob in self.knobs.items() if knob.stage in TRAINING_STAGES}

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        """Wrap the stages this technique acts on, for the knob values ``own``; at ``off()`` change nothing."""
        raise NotImplementedError
