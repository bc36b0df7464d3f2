"""Planetoid data: the raw ``ind.<name>.*`` files found under ``$AUTOTRADEOFF_DATA`` or the cache (PyG
downloads them when online), loaded as PyG ``Data``, and the training splits (the public one, or drawn
per seed: that many training nodes per class from outside the public validation and test nodes)."""

from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from autotradeoff.data import cache_dir, cache_lock, find_files
from autotradeoff.errors import TrialFailed

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["find_raw", "load_planetoid", "make_split"]

_CORE_FILES = ("tx", "allx", "ty", "ally", "graph", "test.index")
_PUBLIC_TRAIN_PER_CLASS = 20  # Planetoid's public split: ind.<name>.x/y are the first 20*C rows of allx/ally


def _stage_raw(source: Path, stage: Path, prefix: str) -> None:
    """Link the found raw files into a writable folder for PyG; rebuild x/y if the copy lacks them."""
    stage.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"ind.{prefix}.*"):
        link = stage / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    if (stage / f"ind.{prefix}.x").exists() and (stage / f"ind.{prefix}.y").exists():
        return
    with open(stage / f"ind.{prefix}.allx", "rb") as fx, open(stage / f"ind.{prefix}.ally", "rb") as fy:
        allx, ally = pickle.load(fx, encoding="latin1"), pickle.load(fy, encoding="latin1")
    n_train = _PUBLIC_TRAIN_PER_CLASS * ally.shape[1]
    for name, value in (("x", allx[:n_train]), ("y", ally[:n_train])):
        with open(stage / f"ind.{prefix}.{name}", "wb") as handle:
            pickle.dump(value, handle, protocol=2)


def find_raw(name: str) -> Path:
    """The folder holding ``ind.<name>.*``; PyG downloads it into the cache when online and missing."""

    def download(target: Path) -> None:
        from torch_geometric.datasets import Planetoid

        Planetoid(str(target.parent.parent), name)  # PyG's own download into <root>/<Name>/raw

    return find_files(f"planetoid/{name}/raw", [f"ind.{name.lower()}.{f}" for f in _CORE_FILES],
                      what=f"Planetoid {name}", download=download)


@lru_cache(maxsize=4)
def load_planetoid(name: str) -> Data:
    """The PyG ``Data`` of a Planetoid graph (public split), cached per process."""
    from torch_geometric.datasets import Planetoid

    root = cache_dir() / "planetoid"
    with cache_lock(f"planetoid-{name}"):  # the first trial stages and processes, the others wait and read
        _stage_raw(find_raw(name), root / name / "raw", name.lower())
        return Planetoid(str(root), name)[0]


def make_split(data: Data, labels_per_class: int, seed: int) -> Data:
    """``data`` itself for the public split (0), else a copy whose ``train_mask`` holds ``labels_per_class``
    nodes per class drawn with ``seed`` from outside the public validation and test nodes."""
    if not labels_per_class:
        return data
    generator = torch.Generator().manual_seed(seed)
    pool = ~(data.val_mask | data.test_mask)
    train = torch.zeros_like(pool)
    for label in range(int(data.y.max()) + 1):
        nodes = (pool & (data.y == label)).nonzero().view(-1)
        if len(nodes) < labels_per_class:
            raise TrialFailed(f"labels_per_class={labels_per_class}: class {label} has only {len(nodes)} nodes to draw from")
        train[nodes[torch.randperm(len(nodes), generator=generator)[:labels_per_class].to(nodes.device)]] = True
    split = data.clone()
    split.train_mask = train
    return split
