import gzip
import pickle

import numpy as np
import pytest

from dyfip.data import DataError, load_cifar10, load_dataset, load_fashion_mnist, read_idx


def test_digits_splits_are_disjoint_stratified_uint8(digits):
    assert digits.image_shape == (1, 8, 8)
    assert digits.train.images.dtype == np.uint8 and digits.train.images.max() == 255
    total = len(digits.train) + len(digits.val) + len(digits.test)
    assert total == 1797
    for split in (digits.train, digits.val, digits.test):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() > 0.7 * counts.mean()
    flat = lambda s: {x.tobytes() + bytes([y]) for x, y in zip(s.images, s.labels)}
    assert len(flat(digits.test) & flat(digits.train)) < 5  # only true duplicate images


def _write_idx(path, array, magic_type=0x08, truncate=0):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    body = array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + body[: len(body) - truncate])


def _fake_fashion(folder, n_train=60, n_test=20):
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_reads_idx_files(tmp_path):
    _fake_fashion(tmp_path)
    data = load_fashion_mnist(str(tmp_path))
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.train) + len(data.val) == 60 and len(data.test) == 20


def test_idx_errors_are_clear(tmp_path):
    _write_idx(tmp_path / "bad.gz", np.zeros((4, 2, 2)), truncate=3)
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "bad.gz", 3)
    _write_idx(tmp_path / "float.gz", np.zeros(4), magic_type=0x0D)
    with pytest.raises(DataError, match="unsigned-byte IDX"):
        read_idx(tmp_path / "float.gz", 1)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "nowhere"))


def test_corrupt_fashion_files_are_named(tmp_path):
    """A cut-off download, swapped files and labels outside the classes name the file or
    split instead of failing later in training."""
    _fake_fashion(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"{images} cannot be read"):
        load_fashion_mnist(str(tmp_path))
    images.write_bytes(whole)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.rename(tmp_path / "swap.gz")
    images.rename(labels)
    (tmp_path / "swap.gz").rename(images)
    with pytest.raises(DataError, match="has 1 dimensions, expected 3 .*swapped"):
        load_fashion_mnist(str(tmp_path))
    _fake_fashion(tmp_path)
    _write_idx(labels, np.arange(60) % 11)
    with pytest.raises(DataError, match=r"labels \[10\] outside 0..9"):
        load_dataset("fashion-mnist", str(tmp_path))


def _write_cifar_batch(path, n, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [i % classes for i in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar10_reads_python_batches(tmp_path):
    for i in (1, 2):
        _write_cifar_batch(tmp_path / f"data_batch_{i}", 50, seed=i)
    _write_cifar_batch(tmp_path / "test_batch", 20)
    data = load_cifar10(str(tmp_path))
    assert data.image_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20


def test_cifar10_bad_input(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_cifar10(None)
    with pytest.raises(DataError, match="no data_batch"):
        load_cifar10(str(tmp_path))
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    (tmp_path / "test_batch").write_bytes(b"x")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_cifar10(str(tmp_path))


def test_empty_class_is_rejected(tmp_path):
    _write_cifar_batch(tmp_path / "data_batch_1", 90, classes=9)  # class 9 never appears
    _write_cifar_batch(tmp_path / "test_batch", 20)
    with pytest.raises(DataError, match=r"no images of class\(es\) \[9\]"):
        load_dataset("cifar10", str(tmp_path))


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist-ish")
