"""CIFAR10, Tiny ImageNet and synthetic loaders read what the tests wrote in the real formats."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import data
from pipeline.errors import UserError


def write_cifar10(root: Path, per_batch: int = 20, batches: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's cifar-10-batches-py: pickled dicts, `data` uint8 N x 3072 (R, G, B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(per_batch * batches, 3072), dtype=np.uint8)
    labels = np.arange(per_batch * batches) % 10
    for b in range(batches):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        batch = {b"batch_label": b"training batch", b"labels": labels[sl].tolist(), b"data": images[sl]}
        with open(folder / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"labels": labels[:10].tolist(), b"data": images[:10]}, f)
    return images, labels


def write_tinyimagenet(root: Path, wnids=("n01443537", "n01629819", "n01641577"), per_class: int = 4):
    """tiny-imagenet-200's layout; each image one flat colour (JPEG keeps flat colours exactly),
    one of them greyscale as some of the real files are. Returns {file name: (colour, class)}."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    from PIL import Image

    truth, lines = {}, []
    for c, w in enumerate(wnids):
        images = folder / "train" / w / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * c + 10 * i, 200 - 30 * c, 17 * i)
            name = f"{w}_{i}.JPEG"
            Image.new("RGB", (64, 64), colour).save(images / name)
            truth[name] = (colour, c)
        val_name = f"val_{c}.JPEG"
        if c == 0:
            Image.new("L", (64, 64), 90).save(folder / "val" / "images" / val_name)
            truth[val_name] = ((90, 90, 90), c)
        else:
            Image.new("RGB", (64, 64), (c, 2 * c, 3 * c)).save(folder / "val" / "images" / val_name)
            truth[val_name] = ((c, 2 * c, 3 * c), c)
        lines.append(f"{val_name}\t{w}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return truth


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
    mean = torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)
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
