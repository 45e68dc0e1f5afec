"""Image data sets read from the files the usual tools write (never downloaded at run time unless
asked): MNIST's and Fashion-MNIST's IDX files, CIFAR10's pickles, the Tiny ImageNet folder tree."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.data.container import Data
from pipeline.data.tabular import split, synthetic
from pipeline.errors import UserError

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format, plain or .gz): magic (0, 0, type, ndim), big-endian uint32 sizes,
    then the values. A file shorter than its header says is called truncated, with both sizes."""
    import gzip

    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number): replace it with the original file")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    head = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:head], dtype=">u4")) if len(raw) >= head else ()
    expected = head + int(np.prod(shape)) * dtype.itemsize if shape else head
    if len(raw) < expected:
        raise UserError(
            f"{path} is truncated: {expected} bytes expected (header: {list(shape) or ndim}), {len(raw)} "
            "found: download or copy it again"
        )
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=head).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    """`<stem>` or `<stem>.gz` in `folder`, whichever exists."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The images and labels of `<prefix>-images-idx3-ubyte` / `-labels-idx1-ubyte`; None if absent."""
    images, labels = (
        _idx_file(folder, f"{prefix}-images-idx3-ubyte"),
        _idx_file(folder, f"{prefix}-labels-idx1-ubyte"),
    )
    if images is None or labels is None:
        return None
    x, y = read_idx(images), read_idx(labels)
    if len(x) != len(y):
        raise UserError(
            f"{images} holds {len(x)} images but {labels} {len(y)} labels: use files of one release"
        )
    return x, y.astype(np.int64)


def _mnist_like(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    mean: float,
    std: float,
    subset: int,
    test_fraction,
    split_seed,
    batch_size,
) -> Data:
    """A `subset` of 28x28 greyscale images, standardised with the data set's mean and std, split."""
    if subset and subset < len(y):
        keep = np.random.default_rng(split_seed).permutation(len(y))[:subset]
        x, y = x[keep], y[keep]
    images = (x.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    return split(name, images, y, test_fraction, split_seed, batch_size, 10)


def mnist(
    batch_size: int,
    root: str = "data",
    subset: int = 10_000,
    test_fraction: float = 0.5,
    split_seed: int = 0,
    download: bool = False,
) -> Data:
    """A `subset` of MNIST's training images, split train/test (appendix G.1: 10 000, 50/50).

    Reads torchvision's on-disk layout, `<root>/MNIST/raw/train-images-idx3-ubyte` and
    `train-labels-idx1-ubyte` (plain or .gz); `download=True` fetches them where there is network.
    """
    root_path = Path(root).expanduser().resolve()
    raw = root_path / "MNIST" / "raw"
    if download:
        from torchvision.datasets import MNIST

        MNIST(str(root_path), train=True, download=True)
    pair = _idx_pair(raw, "train")
    if pair is None:
        raise UserError(
            f"MNIST not found under {raw} (expects train-images-idx3-ubyte "
            "and train-labels-idx1-ubyte): set dataset.root=<folder holding MNIST/raw> or "
            "dataset.download=true on a machine with network"
        )
    # Standardise with MNIST's usual mean and std, as torchvision tutorials do.
    return _mnist_like("mnist", *pair, 0.1307, 0.3081, subset, test_fraction, split_seed, batch_size)


FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def fashion_mnist(
    batch_size: int,
    root: str = FASHION_MNIST_ROOT,
    subset: int = 10_000,
    test_fraction: float = 0.5,
    split_seed: int = 0,
    stand_in: bool = False,
) -> Data:
    """A `subset` of Fashion-MNIST's training images (Xiao et al. 2017: MNIST's shape and format,
    ten kinds of clothing), split train/test like `mnist`.

    Reads `<root>/train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]`, the flat layout
    of Debian's `dataset-fashion-mnist` (its folder is the default root) and of the zalando release.
    Where the files are absent, `stand_in=True` returns the synthetic stand-in of the same shape, named
    so (the CPU twins of the MNIST experiments run anywhere; their records say which data they had).
    """
    folder = Path(root).expanduser().resolve()
    pair = _idx_pair(folder, "train")
    if pair is None:
        if stand_in:
            print(
                f"note: no Fashion-MNIST under {folder}: training on a synthetic stand-in of its shape "
                "(apt-get install dataset-fashion-mnist for the real images)",
                file=sys.stderr,
            )
            d = synthetic(batch_size, (28, 28), 10, subset or 10_000, 1.0, test_fraction, split_seed)
            d.name = f"synthetic (stand-in: no Fashion-MNIST under {folder})"
            return d
        raise UserError(
            f"Fashion-MNIST not found under {folder} (expects train-images-idx3-ubyte.gz and "
            "train-labels-idx1-ubyte.gz): apt-get install dataset-fashion-mnist, or set "
            "dataset.root=<folder holding them>"
        )
    # Fashion-MNIST's pixel mean and std over its 60 000 training images.
    return _mnist_like("fashion_mnist", *pair, 0.2860, 0.3530, subset, test_fraction, split_seed, batch_size)


def cifar10(
    batch_size: int,
    root: str = "data",
    subset: int = 10_000,
    test_fraction: float = 0.5,
    split_seed: int = 0,
) -> Data:
    """A `subset` of CIFAR10's 50 000 training images, split train/test (appendix I.3: 10 000).

    Reads torchvision's on-disk layout, `<root>/cifar-10-batches-py/data_batch_1` ... `_5`
    (pickled dicts with `data`, uint8 N x 3072 in channel-major order, and `labels`); images are
    3x32x32, standardised per channel with CIFAR10's usual mean and std.
    """
    import pickle

    folder = Path(root).expanduser().resolve() / "cifar-10-batches-py"
    files = sorted(folder.glob("data_batch_*"))
    if not files:
        raise UserError(
            f"CIFAR10 not found under {folder} (expects data_batch_1 ... data_batch_5): set "
            "dataset.root=<folder holding cifar-10-batches-py>; get it with "
            "torchvision.datasets.CIFAR10(root, download=True) on a machine with network"
        )
    images, labels = [], []
    for f in files:
        with open(f, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = np.concatenate(images).reshape(-1, 3, 32, 32)
    y = np.concatenate(labels)
    if subset and subset < len(y):
        keep = np.random.default_rng(split_seed).permutation(len(y))[:subset]
        x, y = x[keep], y[keep]
    mean = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)
    x = (x.astype(np.float32) / 255.0 - mean) / std
    return split("cifar10", x, y, test_fraction, split_seed, batch_size, 10)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _read_images(paths: list[Path]) -> np.ndarray:
    """JPEGs -> float32 N x 3 x H x W in [0, 1] (greyscale files are converted to RGB)."""
    from PIL import Image

    out = None
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if out is None:
            out = np.empty((len(paths), 3, *arr.shape[:2]), dtype=np.float32)
        out[i] = arr.transpose(2, 0, 1) / np.float32(255.0)
    return out if out is not None else np.empty((0, 3, 64, 64), dtype=np.float32)


def tinyimagenet(
    batch_size: int,
    root: str = "data",
    subset: int | None = None,
    val_subset: int | None = None,
    split_seed: int = 0,
) -> Data:
    """Tiny ImageNet (appendix G.2): 200 classes, 64x64 images, train on `train/`, test on `val/`.

    Reads the standard folder layout `<root>/tiny-imagenet-200/`: `wnids.txt` (class order),
    `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` with `val/val_annotations.txt` (file, wnid,
    box). Pixels get ImageNet normalization here; the resize to 224 is done by the model per batch
    on the device (`TorchvisionNet.input_size`), because 100 000 images at 224x224x3 float do not
    fit in memory (at 64x64 they take 4.9 GB). `subset` / `val_subset` keep that many images,
    drawn at random with `split_seed` before decoding.
    """
    folder = Path(root).expanduser().resolve() / "tiny-imagenet-200"
    wnids_file, annotations = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    if not (wnids_file.is_file() and annotations.is_file() and (folder / "train").is_dir()):
        raise UserError(
            f"Tiny ImageNet not found under {folder} (expects wnids.txt, train/<wnid>/images, "
            "val/images and val/val_annotations.txt): set dataset.root=<folder holding "
            "tiny-imagenet-200>; get it from http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip"
        )
    wnids = wnids_file.read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    train = [(p, index[w]) for w in wnids for p in sorted((folder / "train" / w / "images").glob("*.JPEG"))]
    val = []
    for line in annotations.read_text().splitlines():
        if line.strip():
            name, wnid = line.split("\t")[:2]
            val.append((folder / "val" / "images" / name, index[wnid]))
    rng = np.random.default_rng(split_seed)

    def pick(items: list, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        if n and n < len(items):
            items = [items[i] for i in np.sort(rng.permutation(len(items))[:n])]
        x = _read_images([p for p, _ in items])
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
        return (x - mean) / std, np.asarray([c for _, c in items], dtype=np.int64)

    x_tr, y_tr = pick(train, subset)
    x_te, y_te = pick(val, val_subset)
    if not len(y_tr) or not len(y_te):
        raise UserError(f"Tiny ImageNet under {folder} has no images in train/ or val/images")
    return Data(
        name="tinyimagenet",
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        num_classes=len(wnids),
        batch_size=int(batch_size),
    )
