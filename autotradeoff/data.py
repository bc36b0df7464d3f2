"""Where data is found: ``$AUTOTRADEOFF_DATA`` first, then the tool's own cache, else a download.

Layout (the same under both roots): ``planetoid/<Name>/raw/ind.<name>.*`` (PyG's layout),
``glue/<TASK>/{train,dev}.tsv``, ``fashion-mnist/*-ubyte.gz`` (gzipped IDX files; Debian's
``dataset-fashion-mnist`` folder is also looked in), ``cifar10/cifar-10-batches-py/`` (the python version).
The cache is ``$AUTOTRADEOFF_CACHE`` or ``~/.cache/autotradeoff``;
processed files and downloads go there, so a read-only data directory works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from filelock import FileLock

from autotradeoff.errors import DataMissingError, UsageError

__all__ = ["DATA_ENV", "cache_dir", "cache_lock", "cached_artifact", "data_root", "find_files"]

T = TypeVar("T")

DATA_ENV = "AUTOTRADEOFF_DATA"
CACHE_ENV = "AUTOTRADEOFF_CACHE"


def data_root() -> Path | None:
    """The user's data directory from ``$AUTOTRADEOFF_DATA``; None when unset. Must exist if set."""
    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UsageError(f"{DATA_ENV}={value!r} is not a directory; point it at a folder holding "
                         f"planetoid/, glue/ … or unset it to use {cache_dir() / 'data'}")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autotradeoff").expanduser()


def cache_lock(name: str) -> FileLock:
    """An inter-process lock for preparing ``name`` in the cache: parallel trials (Ray workers, other
    searches) must not write and read the same half-written file."""
    from filelock import FileLock

    locks = cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{name.replace('/', '_')}.lock"))


def find_files(
    relative: str,
    required: Sequence[str],
    *,
    what: str,
    download: Callable[[Path], None] | None = None,
    also: Sequence[Path] = (),
) -> Path:
    """Return the first directory ``<root>/<relative>`` that holds every ``required`` file.

    Roots: ``$AUTOTRADEOFF_DATA`` then ``<cache>/data``, then the folders ``also`` (system copies,
    e.g. a Debian data package). If none has them, ``download(dir)`` is tried
    into the cache (unless ``AUTOTRADEOFF_OFFLINE=1``); failing that, DataMissingError names the
    directories and files looked for.
    """
    roots = [root for root in (data_root(), cache_dir() / "data") if root is not None]
    candidates = [root / relative for root in roots]
    for directory in (*candidates, *also):
        if all((directory / name).is_file() for name in required):
            return directory
    target = candidates[-1]  # the cache
    reason = "offline (AUTOTRADEOFF_OFFLINE=1)" if os.environ.get("AUTOTRADEOFF_OFFLINE") == "1" else None
    if download is not None and reason is None:
        try:
            target.mkdir(parents=True, exist_ok=True)
            download(target)
            if all((target / name).is_file() for name in required):
                return target
            reason = "the download did not produce them"
        except Exception as exc:  # any network/filesystem failure becomes the one-line message
            reason = f"download failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    looked = " or ".join(str(d) for d in (*candidates, *also))
    raise DataMissingError(f"{what} not found: looked for {', '.join(required)} in {looked}; {reason or 'no download available'}. "
                           f"Put the files there or set {DATA_ENV} to a folder that has {relative}/.")


def cached_artifact(kind: str, key: str, *, load: Callable[[Path], T], make: Callable[[], T],
                    save: Callable[[T, Path], None]) -> T:
    """``load`` the artifact cached as ``<cache>/<kind>/<key>``, or ``make`` it, ``save`` it there and return
    it. Written whole into a temporary folder, then renamed: a crash leaves no half artifact. Parallel
    trials (Ray workers, other searches) asking for the same key make it once; the others wait and load."""
    folder = cache_dir() / kind / key
    with cache_lock(f"{kind}-{key}"):
        if folder.is_dir():
            return load(folder)
        value = make()
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save(value, tmp)
        os.replace(tmp, folder)
        return value
