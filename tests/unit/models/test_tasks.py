"""Each task's loss, evaluation and devinterp hook agree with the loss written out by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import build
from pipeline.models.tasks import CausalLM, Classification
from tests.helpers.config import compose_cfg


class Lookup(nn.Module):
    """Logits read from a fixed table: a model whose predictions the test controls."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def test_classification_matches_cross_entropy_whatever_the_chunking() -> None:
    gen = torch.Generator().manual_seed(0)
    model = Lookup(torch.randn(10, 4, generator=gen))
    x = torch.randint(0, 10, (100,), generator=gen)
    y = torch.randint(0, 4, (100,), generator=gen)
    logits = model(x)
    loss, acc = Classification().evaluate(model, x, y)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    chunked = Classification(eval_batch=7).evaluate(model, x, y)
    assert chunked == pytest.approx((loss, acc), rel=1e-6)
    first = Classification(eval_limit=30).evaluate(model, x, y)
    assert first[0] == pytest.approx(F.cross_entropy(logits[:30], y[:30]).item(), rel=1e-6)
    assert Classification().sgld_loss(model, (x, y)).item() == pytest.approx(loss, rel=1e-6)
    assert model.training  # evaluation restores the mode it found


def test_causal_lm_predicts_the_next_token() -> None:
    vocab = 5
    # A bigram model that always predicts token (i + 1) mod 5 after token i.
    perfect = Lookup(10.0 * F.one_hot((torch.arange(vocab) + 1) % vocab, vocab).float())
    ids = torch.tensor([[0, 1, 2, 3, 4, 0], [2, 3, 4, 0, 1, 2]])
    task = CausalLM()
    loss, acc = task.evaluate(perfect, ids, ids)
    assert acc == 1.0 and loss < 1e-3
    # One wrong next token out of 10 predictions: token accuracy 0.9.
    wrong = ids.clone()
    wrong[1, 5] = 3
    assert task.evaluate(perfect, wrong, wrong)[1] == pytest.approx(0.9)
    # The loss is the cross-entropy of position i's logits against token i + 1.
    model = Lookup(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(1)))
    out = model(ids)
    by_hand = F.cross_entropy(out[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
    assert task.loss(out, ids).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert task.sgld_loss(model, (ids, ids)).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert task.evaluate(model, ids, ids)[0] == pytest.approx(by_hand.item(), rel=1e-6)


def test_task_comes_from_the_dataset_config() -> None:
    assert isinstance(build.task(compose_cfg()), Classification)
    cfg = compose_cfg(["+experiment=tinystories_sgd"])
    task = build.task(cfg)
    assert isinstance(task, CausalLM) and task.eval_limit == 512
