"""The Task interface: what a task declares (knobs, fidelity, metrics) and the one call it answers."""

from __future__ import annotations

from typing import Any

from autotradeoff.errors import UsageError
from autotradeoff.space import Knob

__all__ = ["Task", "run_fidelity"]


def run_fidelity(*, gpu_share: float, warmup: int, repeats: int) -> dict[str, Knob]:
    """Fidelity every task shares: seed, CPUs and GPU share per trial, latency warm-up and repeats."""
    return {
        "seed": Knob("seed", "int", 0, 0, 2**31 - 1, help="first seed"),
        "threads": Knob("threads", "int", 1, 1, 256, help="CPUs (torch threads) per trial"),
        "gpu_share": Knob("gpu_share", "float", gpu_share, 0.0, 8.0, help="GPUs per trial when GPUs exist"),
        "latency_warmup": Knob("latency_warmup", "int", warmup, 0, 1000, help="untimed inference calls"),
        "latency_repeats": Knob("latency_repeats", "int", repeats, 1, 10000, help="timed inference calls"),
    }


class Task:
    """A task knows its data, model and metrics. Subclasses set the tables and implement ``run``.

    ``knobs``: what a search space may search; each default is the baseline ("off") value.
    ``fidelity``: settings that trade trial cost for measurement quality (not searched).
    ``metrics``: every metric ``run`` returns, with its natural direction ("max"/"min").
    ``checkpoints``: ``run`` reports validation progress, so a search may stop it early.
    ``metric_prefixes``: further metrics whose names vary with the config (one per inference level,
    say) are stored when they start with one of these; they are reported but cannot be objectives.
    """

    name: str = ""
    description: str = ""
    knobs: dict[str, Knob] = {}
    fidelity: dict[str, Knob] = {}
    metrics: dict[str, str] = {}
    metric_prefixes: tuple[str, ...] = ()
    checkpoints: bool = False  # its training calls ``stopping.checkpoint``: early stopping applies
    default_objectives: tuple[str, ...] = ("accuracy", "latency_ms")

    def fill_fidelity(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fidelity with defaults filled in and every given value validated."""
        return self._fill(self.fidelity, dict(given or {}), "fidelity", "fidelity setting")

    def fill_config(self, given: dict[str, Any], where: str = "config") -> dict[str, Any]:
        """A complete, validated config: given knobs checked, the rest at their defaults."""
        return self._fill(self.knobs, given, where, "knob")

    def _fill(self, table: dict[str, Knob], given: dict[str, Any], where: str, what: str) -> dict[str, Any]:
        unknown = set(given) - set(table)
        if unknown:
            raise UsageError(f"{where}: unknown {what} {sorted(unknown)[0]!r} for task {self.name}; "
                             f"choices: {', '.join(table)}.")
        return {name: knob.check(given[name], f"{where}.{name}") if name in given else knob.default
                for name, knob in table.items()}

    def resources(self, fidelity: dict[str, Any], *, gpus_available: bool) -> dict[str, float]:
        """Ray resources one trial holds: CPUs (= torch threads) and a GPU share when GPUs exist."""
        return {"cpu": float(fidelity.get("threads", 1)),
                "gpu": float(fidelity.get("gpu_share", 0.0)) if gpus_available else 0.0}

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        """Raise DataMissingError now (in the driver) rather than in every trial."""

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Costs known before training, measured as ``run`` measures them (on the untrained, approximated
        model): a search rejects a config that breaks a cost constraint here, in seconds, and early
        stopping judges a trial on them. Only metrics that training cannot change belong here; the
        default knows none."""
        return {}

    def remeasure(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """The timed costs of ``config`` measured again, alone on the machine (see ``remeasure``). The
        default runs the trial again; tasks that can rebuild the model cheaply override it."""
        return self.run(config, fidelity, device=device)

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Train and evaluate one complete config; return every metric in ``self.metrics``. Training
        loops may call ``stopping.checkpoint`` so that a search can stop a hopeless trial early."""
        raise NotImplementedError
