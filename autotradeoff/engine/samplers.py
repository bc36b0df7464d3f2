"""Which Optuna sampler a search uses, and how it is configured: ``auto`` by the space and the budget, the
space's constraints passed to every sampler that models them, and configs rejected before training shown to
the samplers that read COMPLETE trials only (``study.record.SamplerView``).

Why each rule, as measured on the published tables (``reports/benchmarks/search_efficiency.md``):
- a Gaussian process (log-EHVI) is the most sample-efficient for a few knobs;
- on spaces of categorical knobs only (architecture cells), TPE alone keeps exploring the whole space;
  moves around the current front instead (``LocalMoves``: one knob changed, or two front configs crossed),
  from the second finished trial on, with TPE left the proposals where no untried move is found, reached
  random search's 200-trial hypervolume in 15 (NAS-Bench-Graph) and 42 (NAS-Bench-201) trials;
- NSGA-II draws its first generation at random (``population_size`` trials): it only pays off when the
  budget holds several generations, so it is chosen by the budget, not by the number of knobs alone;
- the baseline and the space's ``baselines:`` run first (warm start) and count towards every sampler's
  random start-up, which Optuna counts over the study's finished trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from autotradeoff.engine.budget import Budget
from autotradeoff.errors import UsageError
from autotradeoff.knobs import Constraint
from autotradeoff.space import SearchSpace
from autotradeoff.study import record

__all__ = ["SAMPLERS", "auto_sampler", "make_sampler", "constraints_func", "SeesRejected", "LocalMoves", "Handover",
           "NSGA2_GENERATIONS", "LOCAL_SHARE", "LOCAL_STARTUP", "LOCAL_CROSSOVER", "GP_MAX_TRIALS"]

SAMPLERS = ("auto", "tpe", "tpe-local", "gp", "nsga2", "random")
# ``tpe-local``'s moves around the front. Chosen on 1,500 seeds (1,600-3,099; the report scores 0-29) at 50 trials,
# regret as a share of random search's, NAS-Bench-201 CIFAR-10: share 0.85 / 5 start-up trials / no crossing (the
# earlier default, picked on 30-seed sets, whose median ratio moves by 0.2 between sets) 0.556; 1.0/5/0.5 0.513;
# 0.85/2/0.5 0.520; 1.0/2/0.3 0.514; 1.0/2/0.5 0.507. The other tables, 600 seeds, 0.85/5/none -> 1.0/2/0.5: NAS-Bench-Graph
# Cora 0.449 -> 0.434, CiteSeer 0.361 -> 0.360, PubMed 0.307 -> 0.307; NAS-Bench-201 CIFAR-100 0.782 -> 0.745,
# ImageNet16 0.697 -> 0.727 (the one table where it reads worse; 30-seed sets of either spread over 0.2).
LOCAL_SHARE = 1.0  # proposals that are moves; TPE proposes the first trials and wherever no untried move is found
LOCAL_STARTUP = 2  # finished trials before moves begin (with the warm start: the baseline and one TPE draw)
LOCAL_CROSSOVER = 0.5  # share of moves that cross two front configs (each knob from either) instead of changing one
GP_MAX_KNOBS = 8  # past this a GP's fit and acquisition search cost more than the trials they save
GP_MAX_CATEGORICAL = 2  # past it: 2-8 s an ask under Optuna 4; under 5.1 fast, but no better than tpe-local (README)
NSGA2_GENERATIONS = 4  # NSGA-II needs the budget to hold this many generations of its population
NSGA2_POPULATION = 50  # Optuna's default
GP_MAX_TRIALS = 200  # ``auto``'s GP hands over to TPE past this many finished trials (its ask: 1.3 s at 100, 6.6 s at 1,000)


def auto_sampler(space: SearchSpace | None, budget: Budget | None = None) -> str:
    """The default sampler for a space and budget: a Gaussian process (log-EHVI) for up to ``GP_MAX_KNOBS``
    unconditional knobs with at most ``GP_MAX_CATEGORICAL`` categorical ones, where it is the most
    sample-efficient (with more, its acquisition search took 2-8 s an ask on NAS-Bench-201 and NAS-Bench-Graph);
    TPE with local moves around the front (``tpe-local``) for up to 20 unconditional knobs that are all categorical;
    NSGA-II past 20 knobs when the budget is
    known to hold ``NSGA2_GENERATIONS`` generations of its population; multivariate TPE otherwise
    (conditional or mid-sized spaces, and large ones on a budget too small for a population search)."""
    if space is None:
        return "tpe"
    knobs = space.searched.values()
    categorical = sum(k.kind == "categorical" for k in knobs)
    if len(space.searched) <= GP_MAX_KNOBS and categorical <= GP_MAX_CATEGORICAL and not any(k.when for k in knobs):
        return "gp"
    if len(space.searched) <= 20 and all(k.kind == "categorical" for k in knobs) and not any(k.when for k in knobs):
        return "tpe-local"
    enough = budget is not None and budget.unit == "trials" and budget.amount >= NSGA2_GENERATIONS * NSGA2_POPULATION
    return "nsga2" if len(space.searched) > 20 and enough else "tpe"


def constraints_func(constraints: Sequence[Constraint]) -> Callable[[FrozenTrial], list[float]] | None:
    """Optuna's constraint values (<= 0: met) from a trial's stored metrics; unknown metrics count as met."""
    if not constraints:
        return None

    def values(trial: FrozenTrial) -> list[float]:
        metrics = record.metrics(trial)
        return [c.excess(float(metrics[c.metric])) if c.metric in metrics else 0.0 for c in constraints]

    return values


def make_sampler(name: str | BaseSampler, seed: int | None, space: SearchSpace | None = None,
                 budget: Budget | None = None) -> BaseSampler:
    """``auto`` (see ``auto_sampler``), TPE (multivariate, constant liar for parallel workers), TPE with local
    moves around the front (``LocalMoves``), GP, NSGA-II
    or random; the space's constraints are passed to the samplers that model them, and GP and NSGA-II see
    the configs rejected before training (``SeesRejected``). A sampler object (library use) is taken as it is."""
    if isinstance(name, BaseSampler):
        return name
    if name == "auto":
        name = auto_sampler(space, budget)
        if name == "gp":  # a GP's fit is cubic in the trials: affordable for the first few hundred only
            return Handover(make_sampler("gp", seed, space, budget), make_sampler("tpe", seed, space, budget), GP_MAX_TRIALS)
    constrained = constraints_func(space.constraints if space else ())
    if name in ("tpe", "tpe-local"):
        tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, constraints_func=constrained)
        tpe = SeesRejected(tpe, constrained, rejected=False) if constrained else tpe  # TPE reads PRUNED trials itself
        return tpe if name == "tpe" else LocalMoves(tpe, seed=seed, share=LOCAL_SHARE, startup=LOCAL_STARTUP,
                                                             crossover=LOCAL_CROSSOVER)
    if name == "gp":
        gp = optuna.samplers.GPSampler(seed=seed, constraints_func=constrained, warn_independent_sampling=False)
        return SeesRejected(gp, constrained) if constrained else gp
    if name == "nsga2":
        nsga2 = optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constrained)
        return SeesRejected(nsga2, constrained) if constrained else nsga2
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"unknown sampler {name!r}; choices: {', '.join(SAMPLERS)}")


class SeesRejected(BaseSampler):
    """``inner`` reading the study through ``record.SamplerView``: every finished trial with the constraint values
    of this run (``constraints``; a study resumed with a new constraint mixed counts of them, which Optuna's GP
    refuses), and, with ``rejected`` (GP, NSGA-II: they read COMPLETE trials only), the configs rejected before
    training shown as COMPLETE trials breaking their constraints: without them a GP kept proposing configs the
    bounds reject, and NSGA-II never ranked them below feasible ones."""

    def __init__(self, inner: BaseSampler, constraints: Callable[[FrozenTrial], list[float]] | None = None,
                 rejected: bool = True) -> None:
        self.inner, self.constraints, self.rejected = inner, constraints, rejected

    def _view(self, study: optuna.Study) -> Any:
        return record.SamplerView(study, self.constraints, self.rejected)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(self._view(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.inner.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class Handover(BaseSampler):
    """``first`` until the study holds ``after`` finished trials, ``then`` from there on, as OptunaHub's
    AutoSampler hands a GP over to TPE: the GP is the most sample-efficient for a few knobs, but its ask grows
    faster than linearly with the trials (1.3 s at 100 stored trials, 6.6 s at 1,000, ``engine_scale.md``) while
    TPE's stays near 50 ms. Each trial is sampled whole by the sampler chosen when it was asked."""

    def __init__(self, first: BaseSampler, then: BaseSampler, after: int) -> None:
        self.first, self.then, self.after = first, then, after
        self._number, self._chosen = -1, first  # the trial being sampled and its sampler

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        if trial.number != self._number:
            finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
            self._number, self._chosen = trial.number, self.first if len(finished) < self.after else self.then
        return self._chosen

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.then.after_trial(study, trial, state, values)  # both store the constraints the same way; once is enough

    def reseed_rng(self) -> None:
        self.first.reseed_rng()
        self.then.reseed_rng()


class LocalMoves(BaseSampler):
    """``inner`` (TPE) with a share of its proposals replaced by moves around the current front, never to a
    config already tried: a front config with one knob changed (another choice; a numeric knob moved by a
    fraction of its range), or, for a ``crossover`` share of the moves, two front configs crossed (each knob
    from either), which lands between two trade-offs found. On the categorical spaces of NAS-Bench-Graph and
    NAS-Bench-201 local search around the front found it in far fewer trials than TPE alone, which keeps
    exploring the whole space.

    Parents are the non-dominated feasible trials that beat the median trial on every objective (when any
    does): the extremes of a front found early (the fastest config that learns nothing) are Pareto-optimal,
    but moving around them spends trials where no trade-off worth having lies."""

    def __init__(self, inner: BaseSampler, *, seed: int | None = None, share: float = 0.5, startup: int = 5,
                 focus: bool = True, crossover: float = 0.0) -> None:
        import numpy as np

        self.inner, self.share, self.startup, self.focus, self.crossover = inner, share, startup, focus, crossover
        self.rng = np.random.RandomState(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return self.inner.sample_relative(study, trial, search_space)
        trials = study.get_trials(deepcopy=False)
        tried = {_key(t.params) for t in trials if t.params}
        if self.rng.rand() < self.share:
            move = self._move(study, trials, tried, search_space)
            if move is not None:
                return move
        return self._untried(study, trial, tried, search_space)

    def _untried(self, study: optuna.Study, trial: FrozenTrial, tried: set[tuple], space: dict[str, Any]) -> dict[str, Any]:
        """``inner``'s proposal, drawn again while it is a config already tried; past a few, a random untried one.
        Where the moves have run out (every neighbour of the front tried: 12 of 74 trials of a search of the
        162-config Cora curves table were repeats) TPE proposes tried configs, and a repeat of a stored result
        teaches nothing (a config's noise is the job of ``--remeasure``)."""
        for _ in range(5):
            proposal = self.inner.sample_relative(study, trial, space)
            if len(proposal) < len(space):  # the inner sampler's random start-up proposes nothing here: draw one
                break
            if _key(proposal) not in tried:
                return proposal
        untried = _untried_grid(space, tried)
        if untried is not None:  # a categorical space small enough to list: any config left, uniformly
            return untried[self.rng.randint(len(untried))] if untried else self.inner.sample_relative(study, trial, space)
        for _ in range(20):
            config = {name: _draw(distribution, self.rng) for name, distribution in space.items()}
            if _key(config) not in tried:
                return config
        return self.inner.sample_relative(study, trial, space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self.rng.seed()

    def _move(self, study: optuna.Study, trials: list[FrozenTrial], tried: set[tuple],
              space: dict[str, Any]) -> dict[str, Any] | None:
        parents = _parents(study, trials, set(space), focus=self.focus)
        if len(parents) == 0 or sum(t.state == TrialState.COMPLETE for t in trials) < self.startup:
            return None
        if len(parents) >= 2 and self.rng.rand() < self.crossover:
            for _ in range(20):
                first, second = (parents[i].params for i in self.rng.choice(len(parents), 2, replace=False))
                child = {k: first[k] if self.rng.rand() < 0.5 else second[k] for k in space}
                if _key(child) not in tried:
                    return child
        for _ in range(20):
            config = dict(parents[self.rng.randint(len(parents))].params)
            name = list(space)[self.rng.randint(len(space))]
            config[name] = _neighbour(space[name], config[name], self.rng)
            if _key(config) not in tried:
                return {k: config[k] for k in space}
        return None


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _parents(study: optuna.Study, trials: list[FrozenTrial], names: set[str], *, focus: bool) -> list[FrozenTrial]:
    """Complete feasible trials with every knob of the space, on the front of their losses (focused: among those
    beating the median on every objective, when any do)."""
    from autotradeoff.front.pareto import dominates

    signs = [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values and names <= set(t.params)
            and all(c <= 0 for c in t.system_attrs.get("constraints") or ())]
    losses = {t.number: [s * v for s, v in zip(signs, t.values)] for t in done}
    if focus and done:
        import statistics

        medians = [statistics.median(losses[t.number][i] for t in done) for i in range(len(signs))]
        better = [t for t in done if all(x < m for x, m in zip(losses[t.number], medians))]
        done = better or done
    return [t for t in done if not any(dominates(losses[o.number], losses[t.number]) for o in done if o is not t)]


def _untried_grid(space: dict[str, Any], tried: set[tuple], limit: int = 100_000) -> list[dict[str, Any]] | None:
    """Every config of an all-categorical ``space`` not in ``tried``, or None where the space has a numeric knob or
    more than ``limit`` configs (random draws find an untried one there)."""
    import itertools
    import math

    from optuna.distributions import CategoricalDistribution

    if not all(isinstance(d, CategoricalDistribution) for d in space.values()):
        return None
    if math.prod(len(d.choices) for d in space.values()) > limit:
        return None
    names = list(space)
    configs = (dict(zip(names, values)) for values in itertools.product(*(space[n].choices for n in names)))
    return [c for c in configs if _key(c) not in tried]


def _draw(distribution: Any, rng: Any) -> Any:
    """A value of one knob drawn uniformly (a numeric knob on its log scale where it has one)."""
    import math

    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[rng.randint(len(distribution.choices))]
    low, high, log = distribution.low, distribution.high, distribution.log
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
    step = distribution.step or (1 if isinstance(distribution, IntDistribution) else None)
    if step is not None:
        value = min(max(round((value - low) / step) * step + low, low), high)
    return int(value) if isinstance(distribution, IntDistribution) else value


def _neighbour(distribution: Any, value: Any, rng: Any) -> Any:
    """Another value of one knob: another choice, or a numeric value moved by about a tenth of its (log) range."""
    import math

    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        others = [c for c in distribution.choices if c != value] or list(distribution.choices)
        return others[rng.randint(len(others))]
    low, high, log = distribution.low, distribution.high, distribution.log
    f = (lambda x: math.log(x)) if log else (lambda x: x)
    g = (lambda y: math.exp(y)) if log else (lambda y: y)
    moved = g(min(max(f(value) + rng.normal(0.0, 0.1) * (f(high) - f(low)), f(low)), f(high)))
    if isinstance(distribution, IntDistribution):
        step = distribution.step or 1
        moved = int(round((moved - low) / step) * step + low)
        moved = min(max(moved, low), high)
    return moved
