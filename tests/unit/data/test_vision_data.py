"""CIFAR10, Tiny ImageNet and synthetic loaders read what the tests wrote in the real formats."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import data
from pipeline.data import vision
from pipeline.errors import UserError
from tests.helpers.data_files import write_cifar10, write_tinyimagenet


def test_cifar10_reads_the_pickled_batches(tmp_path: Path) -> None:
    images, labels = write_cifar10(tmp_path)
    d = data.cifar10(batch_size=8, root=str(tmp_path), subset=60, test_fraction=0.5)
    assert d.name == "cifar10" and d.num_classes == 10
    assert d.x_train.shape == (30, 3, 32, 32) and len(d.y_test) == 30
    assert d.model_inputs()["in_shape"] == (3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    pixels = ((torch.cat([d.x_train, d.x_test]) * std + mean) * 255).round().to(torch.uint8)
    # Every image is one of the file's rows, channel-major, with its own label.
    by_row = {images[i].tobytes(): labels[i] for i in range(len(labels))}
    ys = torch.cat([d.y_train, d.y_test]).tolist()
    for img, y in zip(pixels, ys):
        assert by_row[img.numpy().tobytes()] == y


def test_cifar10_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        data.cifar10(batch_size=8, root=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download=True" in msg and "\n" not in msg


def test_tinyimagenet_reads_the_folder_layout(tmp_path: Path) -> None:
    truth = write_tinyimagenet(tmp_path)
    d = data.tinyimagenet(batch_size=4, root=str(tmp_path))
    assert d.num_classes == 3 and d.n_train == 12 and len(d.y_test) == 3
    assert d.x_train.shape == (12, 3, 64, 64) and d.x_train.dtype == torch.float32
    mean = torch.tensor(vision.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vision.IMAGENET_STD).view(1, 3, 1, 1)
    # JPEG moves flat colours by a few levels; each image must sit by its file's colour and class.
    train_rgb = ((d.x_train * std + mean) * 255)[:, :, 32, 32].numpy()
    colours = {y: [] for y in range(3)}
    for n, (c, y) in truth.items():
        if not n.startswith("val"):
            colours[y].append(c)
    for rgb, y in zip(train_rgb, d.y_train.tolist()):
        assert min(np.abs(rgb - np.array(c)).max() for c in colours[y]) <= 4
    assert sorted(d.y_train.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    val_rgb = ((d.x_test * std + mean) * 255)[:, :, 32, 32].numpy()
    assert np.allclose(val_rgb, [[90, 90, 90], [1, 2, 3], [2, 4, 6]], atol=4)  # greyscale read as RGB
    assert d.y_test.tolist() == [0, 1, 2]  # classes from val_annotations.txt, in wnids.txt order


def test_tinyimagenet_subset_keeps_that_many(tmp_path: Path) -> None:
    write_tinyimagenet(tmp_path)
    d = data.tinyimagenet(batch_size=4, root=str(tmp_path), subset=5, val_subset=2)
    assert d.n_train == 5 and len(d.y_test) == 2
    again = data.tinyimagenet(batch_size=4, root=str(tmp_path), subset=5, val_subset=2)
    assert torch.equal(d.x_train, again.x_train)


def test_tinyimagenet_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        data.tinyimagenet(batch_size=8, root=str(tmp_path / "none"))
    msg = str(e.value)
    assert str(tmp_path / "none" / "tiny-imagenet-200") in msg and "tiny-imagenet-200.zip" in msg
    assert "\n" not in msg


def test_synthetic_has_the_asked_shape_and_is_learnable() -> None:
    d = data.synthetic(batch_size=16, shape=(3, 8, 8), num_classes=4, n_samples=400, noise=1.0)
    assert d.x_train.shape == (200, 3, 8, 8) and d.num_classes == 4
    assert torch.equal(d.x_train, data.synthetic(16, (3, 8, 8), 4, 400).x_train)
    # Nearest class mean on the training half classifies most test images: there is signal.
    means = torch.stack([d.x_train[d.y_train == c].mean(0) for c in range(4)]).flatten(1)
    pred = torch.cdist(d.x_test.flatten(1), means).argmin(1)
    assert (pred == d.y_test).float().mean() > 0.9
