"""Small data sets and weights in the real on-disk formats (MNIST's and Fashion-MNIST's IDX files,
CIFAR10's pickles, the Tiny ImageNet folder tree, a torchvision state dict): what the loaders read,
without a download."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """MNIST's IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20) -> tuple[np.ndarray, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    labels = np.arange(n_train) % 10
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:n_test])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:n_test])
    return images, labels


def write_fashion_mnist(folder: Path, n_train: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Debian's dataset-fashion-mnist layout: flat, gzip-compressed IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    labels = np.arange(n_train) % 10
    write_idx(folder / "train-images-idx3-ubyte", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", labels, compress=True)
    return images, labels


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


def write_weights(path: Path, arch: str = "resnet18") -> dict:
    import torchvision

    torch.manual_seed(1)
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    torch.save(state, path)
    return state
