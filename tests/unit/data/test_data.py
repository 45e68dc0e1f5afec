"""Loaders read the real on-disk formats; a missing folder is one clear line."""

from pathlib import Path

import pytest
import torch

from pipeline import data
from pipeline.errors import UserError
from tests.helpers.data_files import write_fashion_mnist, write_mnist


def test_mnist_reads_idx_files(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path)
    d = data.mnist(batch_size=8, root=str(tmp_path), subset=40, test_fraction=0.5)
    assert d.name == "mnist" and d.num_classes == 10 and d.in_features == 784
    assert d.n_train == 20 and len(d.y_test) == 20
    # Pixels are the file's bytes, standardised with MNIST's mean and std.
    x = torch.cat([d.x_train, d.x_test]) * 0.3081 + 0.1307
    found = {tuple((row.numpy() * 255).round().astype(int).ravel()[:20]) for row in x}
    expected = {tuple(img.ravel()[:20].astype(int)) for img in images}
    assert found <= expected
    assert set(torch.cat([d.y_train, d.y_test]).tolist()) <= set(labels.tolist())


def test_mnist_missing_folder_names_the_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        data.mnist(batch_size=8, root=str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg and "download=true" in msg
    assert "\n" not in msg


def test_fashion_mnist_reads_debians_gzipped_layout(tmp_path: Path) -> None:
    images, labels = write_fashion_mnist(tmp_path / "fashion-mnist")
    d = data.fashion_mnist(batch_size=8, root=str(tmp_path / "fashion-mnist"), subset=40)
    assert d.name == "fashion_mnist" and d.num_classes == 10 and d.in_features == 784
    assert d.n_train == 20 and len(d.y_test) == 20
    x = torch.cat([d.x_train, d.x_test]) * 0.3530 + 0.2860  # Fashion-MNIST's own mean and std
    found = {tuple((row.numpy() * 255).round().astype(int).ravel()[:20]) for row in x}
    assert found <= {tuple(img.ravel()[:20].astype(int)) for img in images}
    assert set(torch.cat([d.y_train, d.y_test]).tolist()) <= set(labels.tolist())


def test_fashion_mnist_absent_is_one_line_or_a_named_stand_in(tmp_path: Path, capsys) -> None:
    with pytest.raises(UserError) as e:
        data.fashion_mnist(batch_size=8, root=str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "\n" not in msg
    d = data.fashion_mnist(batch_size=8, root=str(tmp_path / "nowhere"), subset=40, stand_in=True)
    assert d.name.startswith("synthetic (stand-in") and str(tmp_path / "nowhere") in d.name
    assert d.in_features == 784 and d.n_train == 20
    assert "synthetic stand-in" in capsys.readouterr().err


@pytest.mark.skipif(
    not Path(data.vision.FASHION_MNIST_ROOT).is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_debians_package() -> None:
    """The real files (.ci/run installs Debian's dataset-fashion-mnist): 60 000 images, 6 000 per class."""
    d = data.fashion_mnist(batch_size=64, subset=0)
    assert d.n_train + len(d.y_test) == 60_000
    assert torch.bincount(torch.cat([d.y_train, d.y_test])).tolist() == [6000] * 10


def test_a_truncated_idx_file_is_called_truncated_with_both_sizes(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(UserError) as e:
        data.mnist(batch_size=8, root=str(tmp_path))
    msg = str(e.value)
    assert "truncated" in msg and "47056 bytes expected" in msg and "1000 found" in msg and "\n" not in msg


def test_digits_is_a_fixed_half_split() -> None:
    a, b = data.digits(batch_size=64), data.digits(batch_size=64)
    assert a.n_train == 898 and len(a.y_test) == 899 and a.in_features == 64
    assert torch.equal(a.x_train, b.x_train)  # the split does not depend on the run's seed
    assert float(a.x_train.max()) <= 1.0
    assert a.steps_per_epoch == 15


def test_epoch_covers_every_sample_once_in_seeded_order() -> None:
    d = data.moons(batch_size=50)
    batches = list(d.epoch(torch.Generator().manual_seed(3)))
    assert [len(y) for _, y in batches] == [50] * 5 + [6]
    seen = torch.cat([x for x, _ in batches])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, d.x_train.tolist()))
    again = list(d.epoch(torch.Generator().manual_seed(3)))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(batches, again))


def test_the_digest_names_the_numbers_and_samples_large_tensors() -> None:
    a, b = data.digits(batch_size=64), data.digits(batch_size=32)
    assert a.digest() == b.digest() and len(a.digest()) == 16  # the batch size is no part of the data
    b.x_train[0, 0] += 1.0
    assert a.digest() != b.digest()
    # Past max_rows a tensor is hashed on evenly spaced rows: the first and last rows still count.
    c = data.digits(batch_size=64)
    c.x_train[-1, 0] += 1.0
    assert c.digest(max_rows=10) != a.digest(max_rows=10)
    assert a.profile() == {"train_samples": 898, "test_samples": 899, "input_shape": [64], "num_classes": 10,
                           "batch_size": 64}  # fmt: skip
