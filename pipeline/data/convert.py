"""What a data-set function of one's own may return, made into the product's `Data`
(docs/bring-your-own.md).

Accepted: a `Data`; a pair of torch Datasets (train, test), DataLoaders' datasets included; numpy
arrays or tensors as `(x_train, y_train, x_test, y_test)`, `((x_train, y_train), (x_test, y_test))`
or a dict with those four keys. Converted where the intent is unambiguous, each time with a note:
float64 inputs to float32, integral float labels to int64, labels shaped (N, 1) to (N,), one-hot
labels to indices. Anything else is named in one line (`UserError`): labels that are not class
indices, labels outside [0, num_classes), sizes that disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pipeline.data.container import Data
from pipeline.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")
FORMS = (
    "return pipeline.data.Data(...), a pair of torch Datasets (train, test), or arrays as "
    "(x_train, y_train, x_test, y_test)"
)


_NOTED: set[str] = set()


def note(text: str) -> None:
    """A conversion's note, once per process (the stages load the data again); on stdout, as the
    job's other notes: stderr is for what stops the job."""
    if text not in _NOTED:
        _NOTED.add(text)
        print(f"note: {text}", flush=True)


def _tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{what} is a {type(a).__name__}, not an array: {FORMS}") from e


def dataset_tensors(ds: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's (x, y) as two tensors: a TensorDataset's own, else its items stacked."""
    if isinstance(ds, DataLoader):
        note(f"took the {what} DataLoader's dataset: batches come from the config's batch size")
        ds = ds.dataset
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1]
    if not isinstance(ds, Dataset) or not hasattr(ds, "__len__"):
        raise UserError(f"the {what} set is a {type(ds).__name__}: {FORMS}")
    items = [ds[i] for i in range(len(ds))]
    if not items or not all(isinstance(it, Sequence) and len(it) == 2 for it in items[:1]):
        raise UserError(f"the {what} Dataset's items are not (x, y) pairs: make __getitem__ return (x, y)")
    x = torch.stack([_tensor(it[0], f"an x of the {what} set") for it in items])
    y = torch.stack([_tensor(it[1], f"a y of the {what} set") for it in items])
    return x, y


def _arrays(returned: Any) -> list[Any]:
    """The four arrays of any accepted form but `Data`."""
    if isinstance(returned, Mapping):
        missing = [k for k in KEYS if k not in returned]
        if missing:
            raise UserError(f"the data set's dict lacks {', '.join(missing)}: give {', '.join(KEYS)}")
        return [returned[k] for k in KEYS]
    if isinstance(returned, (Dataset, DataLoader)):
        raise UserError(f"the data set function returned one {type(returned).__name__}: {FORMS}")
    if isinstance(returned, (tuple, list)):
        if len(returned) == 4:
            return list(returned)
        if len(returned) == 2:
            if all(isinstance(r, (Dataset, DataLoader)) for r in returned):
                return [*dataset_tensors(returned[0], "train"), *dataset_tensors(returned[1], "test")]
            if all(isinstance(r, (tuple, list)) and len(r) == 2 for r in returned):
                return [*returned[0], *returned[1]]
        kind = f"{type(returned).__name__} of {len(returned)}"
        raise UserError(f"the data set function returned a {kind}: {FORMS}")
    raise UserError(f"the data set function returned a {type(returned).__name__}: {FORMS}")


def _inputs(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype == torch.float64:
        note(f"{what} is float64: converted to float32 (the models' parameters are float32)")
        return x.float()
    return x


def _labels(y: torch.Tensor, what: str, sequences: bool) -> torch.Tensor:
    """Class indices (int64, shape (N,), or (N, T) token ids for a language model)."""
    if not sequences and y.ndim == 2 and y.shape[1] == 1:
        note(f"{what} has shape {tuple(y.shape)}: flattened to ({len(y)},)")
        y = y[:, 0]
    elif not sequences and y.ndim == 2:
        one_hot = bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())
        if not one_hot:
            raise UserError(
                f"{what} has shape {tuple(y.shape)}: a classifier's labels are one class index per sample, "
                "shape (N,)"
            )
        note(f"{what} is one-hot, shape {tuple(y.shape)}: converted to class indices")
        y = y.argmax(1)
    elif not sequences and y.ndim != 1:
        raise UserError(f"{what} has shape {tuple(y.shape)}: a classifier's labels have shape (N,)")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        if y.dtype != torch.bool and not bool((y == y.round()).all()):
            bad = float(y[y != y.round()][0])
            raise UserError(
                f"{what} holds {bad:g}, not a class index: labels must be integers 0..num_classes-1 "
                "(classification and language models only)"
            )
        note(f"{what} is {str(y.dtype).removeprefix('torch.')}: converted to int64 class indices")
        return y.long()
    return y.long()  # cross-entropy takes int64 targets (a no-op for int64); any integer type is unambiguous


def to_data(
    returned: Any, name: str, batch_size: int, num_classes: int | None = None, sequences: bool = False
) -> Data:
    """`returned` (any accepted form) as a `Data`, checked; `num_classes` None: from the labels.
    `sequences`: targets are token sequences (a language model's), not one label per sample."""
    if isinstance(returned, Data):
        check_labels(returned, sequences)
        return returned
    x_train, y_train, x_test, y_test = (_tensor(a, k) for a, k in zip(_arrays(returned), KEYS, strict=True))
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise UserError(f"x_{split} has {len(x)} rows and y_{split} {len(y)}: give one label per sample")
    if len(y_train) == 0:
        raise UserError("the training set is empty")
    x_train, x_test = _inputs(x_train, "x_train"), _inputs(x_test, "x_test")
    y_train, y_test = _labels(y_train, "y_train", sequences), _labels(y_test, "y_test", sequences)
    if num_classes is None:
        low = min(int(y_train.min()), int(y_test.min()) if len(y_test) else 0)
        high = max(int(y_train.max()), int(y_test.max()) if len(y_test) else 0)
        num_classes = high + 1
        if low > 0 and not sequences:
            raise UserError(
                f"labels run {low}..{high} and none is 0: shift them to 0..{high - low} in your loader, "
                f"or set dataset.num_classes={num_classes} if class 0 exists"
            )
        note(f"{name}: num_classes={num_classes} from the labels (set dataset.num_classes to fix it)")
    d = Data(name, x_train, y_train, x_test, y_test, int(num_classes), int(batch_size))
    check_labels(d, sequences)
    return d


def check_labels(d: Data, sequences: bool = False) -> None:
    """Labels (token ids) inside [0, num_classes): cross-entropy's 'Target 10 is out of bounds',
    said before training, with the fix."""
    what = "token ids" if sequences else "labels"
    for split, y in (("train", d.y_train), ("test", d.y_test)):
        if not len(y):
            continue
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= d.num_classes:
            k = d.num_classes
            fix = (
                f"labels must be 0..{k - 1}: subtract {lo} in your loader"
                if lo > 0 and hi - lo < k
                else f"set num_classes to at least {hi + 1} (dataset.num_classes)"
                if lo >= 0
                else "labels must be ≥ 0"
            )
            raise UserError(f"{d.name}'s {split} {what} run {lo}..{hi} but num_classes is {k}: {fix}")
