"""The ``autotradeoff`` command: parse, call library functions, print. Bad input -> one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from autotradeoff.errors import AutotradeoffError, StorageUnavailable, UsageError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autotradeoff", description="Search accuracy-versus-cost tradeoffs of efficiency techniques.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def study_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument("--study", required=required, help="study name (default for search: the space's name)")
        p.add_argument("--storage", help="SQLAlchemy URL (default: sqlite:///studies/<study>.db)")

    s = sub.add_parser("search", help="run (or resume) a multi-objective search")
    s.add_argument("--task", required=True, help="task name (`autotradeoff tasks`) or search space preset (`autotradeoff spaces`)")
    s.add_argument("--budget", required=True, help="e.g. 20gpu-h, 0.05cpu-h, 90m, 2h, 40trials")
    s.add_argument("--space", help="space name or YAML path (default: search_spaces/<task>.yaml)")
    study_args(s, required=False)
    s.add_argument("--objectives", help="override the YAML's objectives, e.g. accuracy:max,flops:min")
    s.add_argument("--model", help="pretrained model for language tasks: Hugging Face id or directory (default: minilm)")
    s.add_argument("--fidelity", action="append", default=[], metavar="KEY=VALUE",
                   help="override one of the space's fidelity settings, e.g. train_size=2000 (repeatable)")
    s.add_argument("--workers", type=int, help="trials at once (default: what the machine/cluster holds)")
    s.add_argument("--runner", choices=("ray", "local"), default="ray", help="ray (default) or in-process, one at a time")
    s.add_argument("--ray-address", help="join a running Ray cluster (e.g. 127.0.0.1:6379 or auto)")
    s.add_argument("--sampler", choices=("auto", "tpe", "tpe-local", "gp", "nsga2", "random"), default="auto",
                   help="auto (default): GP for a few unconditional knobs, TPE for conditional or mid-sized spaces, "
                   "NSGA-II past 20 knobs")
    s.add_argument("--constraint", action="append", default=[], metavar="'METRIC<=NUMBER'",
                   help="a bound a config must meet, e.g. 'latency_ms<=5' (repeatable; added to the space's "
                   "constraints); configs breaking one before training are rejected in seconds")
    s.add_argument("--remeasure", type=int, default=8, metavar="N",
                   help="after the search, time up to N front trials again, alone on the machine (default 8; 0: off)")
    s.add_argument("--no-early-stop", action="store_true", help="run every trial to the end (no successive halving)")
    s.add_argument("--seed", type=int, help="sampler seed (reproducible suggestions)")
    s.add_argument("--storage-wait", default="300s", metavar="DURATION",
                   help="wait this long for the storage when it is unreachable or locked (a database restart, a network "
                   "blip), retrying with backoff, before exiting with code 75; the study resumes when re-run (default 300s)")
    s.add_argument("--trial-timeout", type=float, metavar="SECONDS", help="stop and fail a trial running longer than this")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--verbose", action="store_true", help="show Ray's own output")

    f = sub.add_parser("front", help="print the Pareto front and write reports/<study>/index.html")
    study_args(f)
    f.add_argument("--out", type=Path, help="report folder (default: reports/<study>)")
    f.add_argument("--pick", help='rule choosing the report\'s chosen config (default: "<first max objective>>=max-0.01, '
                   'min <first min objective>")')

    e = sub.add_parser("export", help="write a chosen trial's config, metrics and fingerprint as YAML")
    study_args(e)
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--pick", help='rule, e.g. "accuracy>=max-0.01, min latency_ms"')
    e.add_argument("-o", "--output", type=Path, required=True)

    t = sub.add_parser("trial", help="run one configuration (same code path as a search trial)")
    t.add_argument("--task", required=True, help="task name or search space preset (its fidelity is the default)")
    t.add_argument("--config", type=Path, help="exported YAML or a knob: value mapping (default: task defaults)")
    t.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    t.add_argument("--model", help="pretrained model for language tasks (overrides the file's fidelity)")

    a = sub.add_parser("apply", help="write an exported config's model as a directory (Hugging Face for GLUE, "
                          "ViT + ladder for images), then re-score it")
    a.add_argument("config", type=Path, help="a file written by `autotradeoff export`")
    a.add_argument("-o", "--output", type=Path, required=True, help="model directory to write")
    a.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")

    sub.add_parser("tasks", help="list tasks")
    sub.add_parser("techniques", help="list techniques (their knobs are <technique>.<knob> in a space)")
    sub.add_parser("spaces", help="list search spaces")

    d = sub.add_parser("dashboard", help="start optuna-dashboard on a study's storage")
    study_args(d)
    d.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    d.add_argument("--port", type=int, default=8080)
    return parser


def _quiet() -> None:
    """Library warnings as ``autotradeoff: …`` lines on stderr; other libraries' chatter off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("autotradeoff: %(message)s"))
    logging.getLogger("autotradeoff").addHandler(handler)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _quiet()
        from autotradeoff import commands

        return getattr(commands, f"cmd_{args.command}")(args) or 0
    except UsageError as exc:
        print(f"autotradeoff: error: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"autotradeoff: {exc}", file=sys.stderr)
        return 75
    except KeyboardInterrupt:
        print("autotradeoff: interrupted; finished trials are stored, re-run the same command to resume", file=sys.stderr)
        return 130
    except AutotradeoffError as exc:
        print(f"autotradeoff: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
