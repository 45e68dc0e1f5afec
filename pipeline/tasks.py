"""What a model is trained to predict: the loss, the accuracy, and devinterp's loss hook, per task.

One object serves the train loop's loss, the periodic evaluations and the llc stage, so λ is always
estimated on the loss the model was trained on. A data set names its task in its config (key
`dataset.task`, built by `hydra.utils.instantiate`); data sets that name none are classification.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cross_entropy_sums(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
    """Summed cross-entropy, correct argmax predictions and predictions, of logits [n, classes]."""
    loss = F.cross_entropy(logits, y, reduction="sum").item()
    return loss, int((logits.argmax(1) == y).sum().item()), len(y)


class Task:
    """A loss on (model output, target) batches, with the evaluations and SGLD hook built on it."""

    name = "task"

    def __init__(self, eval_batch: int = 8192, eval_limit: int | None = None) -> None:
        self.eval_batch = int(eval_batch)
        self.eval_limit = None if eval_limit is None else int(eval_limit)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of one batch: what SGD descends."""
        raise NotImplementedError

    def _sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        """Summed loss, number of correct predictions and number of predictions in one chunk."""
        raise NotImplementedError

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean batch loss, for stacked outputs (members, batch, ...) and targets
        (members, batch, ...): shape (members,)."""
        return torch.vmap(self.loss)(output, y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy in eval mode (batch norm uses running statistics), in chunks of
        `eval_batch` samples, over the first `eval_limit` samples (all when None)."""
        if self.eval_limit is not None:
            x, y = x[: self.eval_limit], y[: self.eval_limit]
        was_training = model.training
        model.eval()
        loss, correct, count = 0.0, 0, 0
        for i in range(0, len(y), self.eval_batch):
            chunk_loss, chunk_correct, chunk_count = self._sums(
                model(x[i : i + self.eval_batch]), y[i : i + self.eval_batch]
            )
            loss, correct, count = loss + chunk_loss, correct + chunk_correct, count + chunk_count
        model.train(was_training)
        return loss / count, correct / count

    def sgld_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """devinterp's `evaluate(model, batch) -> loss` hook: the training loss on one batch."""
        x, y = batch
        return self.loss(model(x), y)


class Classification(Task):
    """Cross-entropy of class logits `model(x)` (shape [batch, classes]) against labels `y`."""

    name = "classification"

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, y)

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # One flat cross-entropy instead of a vmapped one: the same numbers, a third of the time.
        per = F.cross_entropy(output.flatten(0, 1), y.flatten(), reduction="none")
        return per.view(y.shape[0], -1).mean(1)

    def _sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        return _cross_entropy_sums(output, y)


class CausalLM(Task):
    """Next-token cross-entropy: `model(x)` gives logits [batch, tokens, vocab] for token ids `x`,
    and `y` holds the same ids (labels are the inputs, as in HuggingFace); position i predicts
    token i + 1. Accuracy is the share of next tokens predicted exactly (token accuracy)."""

    name = "causal_lm"

    def __init__(self, eval_batch: int = 32, eval_limit: int | None = 512) -> None:
        # Whole-set evaluations of an LM every `train.eval_every` steps would cost more than the
        # training itself: by default a fixed subset (the first 512 blocks of each split).
        super().__init__(eval_batch, eval_limit)

    @staticmethod
    def _shift(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = output[:, :-1].reshape(-1, output.shape[-1])
        return logits, y[:, 1:].reshape(-1)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(*self._shift(output, y))

    def _sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        return _cross_entropy_sums(*self._shift(output, y))
