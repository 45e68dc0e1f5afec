"""What a data-set function of one's own may return (`pipeline.data.convert`): every accepted form
gives the same `Data`, the unambiguous conversions are made with a note, the rest is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pipeline.data import Data
from pipeline.data.convert import to_data
from pipeline.errors import UserError

RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((40, 1, 6)).astype(np.float32), RNG.integers(0, 3, 40)
XT, YT = RNG.standard_normal((20, 1, 6)).astype(np.float32), RNG.integers(0, 3, 20)


class Items(Dataset):
    """A Dataset that is not a TensorDataset: items (x, y) with y a Python int."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def same(d: Data) -> None:
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.equal(d.x_train, torch.from_numpy(X)) and torch.equal(d.y_train, torch.from_numpy(Y))
    assert torch.equal(d.x_test, torch.from_numpy(XT)) and torch.equal(d.y_test, torch.from_numpy(YT))
    assert (d.num_classes, d.batch_size, d.n_train) == (3, 8, 40)


@pytest.mark.parametrize(
    "returned",
    [
        (X, Y, XT, YT),
        [torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(XT), torch.from_numpy(YT)],
        ((X, Y), (XT, YT)),
        {"x_train": X, "y_train": Y, "x_test": XT, "y_test": YT},
        (
            TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
            TensorDataset(torch.from_numpy(XT), torch.from_numpy(YT)),
        ),
        (Items(X, Y), Items(XT, YT)),
        (DataLoader(Items(X, Y), batch_size=5), DataLoader(Items(XT, YT), batch_size=5)),
    ],
    ids=["arrays", "tensors", "pairs", "dict", "tensordatasets", "datasets", "dataloaders"],
)
def test_every_accepted_form_gives_the_same_data(returned) -> None:
    same(to_data(returned, "mine", 8, num_classes=3))


def test_unambiguous_forms_are_converted_with_a_note(capsys) -> None:
    one_hot = np.eye(3)[Y]
    d = to_data((X.astype(np.float64), one_hot, XT, YT[:, None].astype(np.float32)), "mine", 8)
    same(d)
    out = capsys.readouterr().out
    for note in (
        "x_train is float64: converted to float32",
        "y_train is one-hot, shape (40, 3): converted to class indices",
        "y_test has shape (20, 1): flattened to (20,)",
        "y_test is float32: converted to int64 class indices",
        "mine: num_classes=3 from the labels",
    ):
        assert f"note: {note}" in out


def test_integer_inputs_stay_integers() -> None:  # token or index inputs of an embedding model
    d = to_data(
        (np.arange(10)[:, None], np.arange(10) % 2, np.arange(4)[:, None], np.arange(4) % 2), "ids", 2
    )
    assert d.x_train.dtype == torch.int64 and d.num_classes == 2


@pytest.mark.parametrize(
    ("returned", "num_classes", "line"),
    [
        ((X, Y + 1, XT, YT + 1), None, "labels run 1..3 and none is 0: shift them to 0..2 in your loader"),
        (
            (X, Y + 1, XT, YT + 1),
            3,
            "mine's train labels run 1..3 but num_classes is 3: labels must be 0..2: subtract 1",
        ),
        (
            (X, Y, XT, YT),
            2,
            "mine's train labels run 0..2 but num_classes is 2: set num_classes to at least 3",
        ),
        ((X, Y - 1, XT, YT), 3, "labels must be ≥ 0"),
        ((X, Y + 0.5, XT, YT), 3, ".5, not a class index: labels must be integers"),
        ((X, Y[:-1], XT, YT), 3, "x_train has 40 rows and y_train 39: give one label per sample"),
        (
            (X, np.ones((40, 2)), XT, YT),
            3,
            "y_train has shape (40, 2): a classifier's labels are one class index",
        ),
        (TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), 3, "returned one TensorDataset: return "),
        ((X, Y, XT), 3, "returned a tuple of 3: return pipeline.data.Data(...)"),
        ({"x_train": X}, 3, "the data set's dict lacks y_train, x_test, y_test"),
        ("data.csv", 3, "the data set function returned a str"),
    ],
    ids=[
        "from-one",
        "from-one-k",
        "too-few-classes",
        "negative",
        "not-indices",
        "lengths",
        "2d",
        "one",
        "three",
        "dict",
        "str",
    ],
)
def test_the_rest_is_one_line(returned, num_classes, line: str) -> None:
    with pytest.raises(UserError) as e:
        to_data(returned, "mine", 8, num_classes=num_classes)
    assert line in str(e.value) and "\n" not in str(e.value)


def test_a_containers_labels_are_checked_too() -> None:
    d = Data(
        "mine", torch.from_numpy(X), torch.from_numpy(Y) + 1, torch.from_numpy(XT), torch.from_numpy(YT), 3, 8
    )
    with pytest.raises(UserError, match="mine's train labels run 1..3 but num_classes is 3"):
        to_data(d, "ignored", 8)
    token_ids = torch.randint(0, 50, (10, 8))
    lm = Data("lm", token_ids, token_ids, token_ids, token_ids, 50, 2)
    assert to_data(lm, "lm", 2, sequences=True) is lm
