"""Image datasets as uint8 tensors (N, C, H, W) and int64 labels: Fashion-MNIST and CIFAR-10.

Fashion-MNIST: the four gzipped IDX files under ``fashion-mnist/`` in ``$AUTOTRADEOFF_DATA`` or the
cache, or Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); when online and
missing, downloaded from Zalando's mirror (the files torchvision fetches). CIFAR-10: the python
version's pickled batches under ``cifar10/cifar-10-batches-py/``; downloaded and unpacked when online.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from autotradeoff.data import find_files
from autotradeoff.errors import DataMissingError

__all__ = ["DATASETS", "ImageSet", "load_images", "read_idx"]

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: int


def _fetch(url: str, path: Path) -> None:
    """Download to ``path`` whole or not at all (a cut-off file would be found next time)."""
    part = path.with_name(path.name + ".part")
    urllib.request.urlretrieve(url, part)
    os.replace(part, path)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format; gzipped or not) as an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:  # a cut-off or corrupt gzip
        raise DataMissingError(f"{path} cannot be read ({type(exc).__name__}: {exc}); delete it and fetch it again") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataMissingError(f"{path} is not an unsigned-byte IDX file (bad magic {data[:4]!r})")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataMissingError(f"{path} holds {body.size} bytes for shape {shape}: truncated or corrupt")
    return body.reshape(shape)


def _download_fashion(target: Path) -> None:
    for name in (*FASHION_FILES["train"], *FASHION_FILES["test"]):
        _fetch(FASHION_URL + name, target / name)


def _fashion(split: str) -> ImageSet:
    required = [*FASHION_FILES["train"], *FASHION_FILES["test"]]
    folder = find_files("fashion-mnist", required, what="Fashion-MNIST", download=_download_fashion,
                        also=(DEBIAN_FASHION,))
    images, labels = (read_idx(folder / name) for name in FASHION_FILES[split])
    if images.ndim != 3 or len(images) != len(labels):
        raise DataMissingError(f"Fashion-MNIST {split} in {folder}: {images.shape} images for {labels.shape} labels")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), 10)


def _download_cifar(target: Path) -> None:
    archive = target.parent / "cifar-10-python.tar.gz"
    _fetch(CIFAR_URL, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(target.parent, filter="data")
    archive.unlink()


def _cifar10(split: str) -> ImageSet:
    folder = find_files("cifar10/cifar-10-batches-py", [*CIFAR_FILES["train"], *CIFAR_FILES["test"]],
                        what="CIFAR-10 (python version)", download=_download_cifar)
    images, labels = [], []
    for name in CIFAR_FILES[split]:
        try:
            with open(folder / name, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[b"labels"])
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
            raise DataMissingError(f"{folder / name} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if sum(len(i) for i in images) != len(labels):
        raise DataMissingError(f"CIFAR-10 {split} in {folder}: image and label counts differ")
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long), 10)


DATASETS = {"fashion-mnist": _fashion, "cifar10": _cifar10}


@lru_cache(maxsize=4)
def load_images(dataset: str, split: str) -> ImageSet:
    """``split`` ("train"/"test") of ``dataset``, decoded once per process."""
    return DATASETS[dataset](split)
