"""Real data sets as uint8 NCHW arrays with fixed train / validation / test splits.

Every loader returns a :class:`Dataset`; no loader downloads anything.
"""
from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


class DataError(RuntimeError):
    """A data set is missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, C, H, W)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with ``fraction`` of every class held out."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[: int(round(fraction * len(idx)))])
    held_out = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(len(labels)), held_out)
    return rest, held_out


def _split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> Split:
    return Split(np.ascontiguousarray(images[idx]), labels[idx].astype(np.int64))


def load_digits(data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (values 0..16) scaled to uint8; 60/20/20 stratified split."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    images = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = raw.target.astype(np.int64)
    rest, test = stratified_split(labels, 0.2, split_seed)
    rest_train, rest_val = stratified_split(labels[rest], 0.25, split_seed + 1)
    return Dataset("digits", tuple(str(i) for i in range(10)),
                   _split(images, labels, rest[rest_train]), _split(images, labels, rest[rest_val]),
                   _split(images, labels, test))


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of ``ndim`` dimensions (optionally gzipped), checking its magic
    number, dimensions and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: the IDX header is truncated")
    if data[3] != ndim:
        raise DataError(f"{path} has {data[3]} dimensions, expected {ndim} "
                        f"({'images' if ndim == 3 else 'labels'}): files swapped?")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {body.size} bytes (truncated?)")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    raise DataError(
        f"Fashion-MNIST file {stem}(.gz) not found in {folder}. Install it with "
        "'apt-get install dataset-fashion-mnist' (as root; 'make bench' does this) or pass "
        "--data-dir with the four IDX files.")


def load_fashion_mnist(data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """Fashion-MNIST from IDX files; 10% of train held out (stratified) for validation."""
    folder = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    x_train = read_idx(_find(folder, "train-images-idx3-ubyte"), 3)[:, None]
    y_train = read_idx(_find(folder, "train-labels-idx1-ubyte"), 1).astype(np.int64)
    x_test = read_idx(_find(folder, "t10k-images-idx3-ubyte"), 3)[:, None]
    y_test = read_idx(_find(folder, "t10k-labels-idx1-ubyte"), 1).astype(np.int64)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"Fashion-MNIST in {folder}: image and label counts differ")
    train, val = stratified_split(y_train, 0.1, split_seed)
    return Dataset("fashion-mnist", FASHION_MNIST_CLASSES, _split(x_train, y_train, train),
                   _split(x_train, y_train, val), Split(np.ascontiguousarray(x_test), y_test))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def load_cifar10(data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """CIFAR-10 python pickle batches (``data_batch_*``, ``test_batch``) from a local folder."""
    if not data_dir:
        raise DataError("cifar10 needs --data-dir pointing at the extracted "
                        "'cifar-10-batches-py' folder (nothing is downloaded)")
    folder = Path(data_dir)
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files or not (folder / "test_batch").exists():
        raise DataError(f"{folder} has no data_batch_* and test_batch files of CIFAR-10")
    parts = [_read_cifar_batch(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    train, val = stratified_split(y, 0.1, split_seed)
    return Dataset("cifar10", CIFAR10_CLASSES, _split(x, y, train), _split(x, y, val),
                   Split(x_test, y_test))


LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(LOADERS)}")
    dataset = LOADERS[name](data_dir)
    for split_name in ("train", "val", "test"):
        split = getattr(dataset, split_name)
        present = set(np.unique(split.labels).tolist())
        unknown = sorted(present - set(range(dataset.num_classes)))
        if unknown:
            raise DataError(f"{name} {split_name} split has labels {unknown[:5]} outside "
                            f"0..{dataset.num_classes - 1} (corrupt label file?)")
        missing = set(range(dataset.num_classes)) - present
        if missing:
            raise DataError(f"{name} {split_name} split has no images of class(es) {sorted(missing)}")
    return dataset
