"""What a model is trained to predict: the loss, the accuracy, and devinterp's loss hook, per task.

One object serves the train loop's loss, the periodic evaluations and every SGLD estimate, so λ is
always estimated on the loss the model was trained on; for stacked models (many members in one
forward pass) `member_losses` is the one per-member loss everything uses. A data set names its task
in its config (key `dataset.task`, built by `hydra.utils.instantiate`); data sets that name none are
classification.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _cross_entropy_sums(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
    """Summed cross-entropy, correct argmax predictions and predictions, of logits [n, classes]."""
    loss = F.cross_entropy(logits, y, reduction="sum").item()
    return loss, int((logits.argmax(1) == y).sum().item()), len(y)


def _per_member_targets(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Targets (members, batch, ...) for stacked outputs (members, batch, ..., classes): per-member
    targets as given, targets shared by every member (batch, ...) repeated for each."""
    return y if y.dim() == output.dim() - 1 else y.expand(output.shape[0], *y.shape)


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
        """Each member's mean batch loss, for stacked outputs (members, batch, ...) and targets per
        member (members, batch, ...) or shared by all (batch, ...): shape (members,)."""
        return torch.vmap(self.loss)(output, _per_member_targets(output, y))

    def member_sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's summed loss and number of correct predictions on one chunk (two (members,)
        tensors), for stacked outputs and shared targets: classification only (only classifiers
        are stacked, `pipeline.config.members`)."""
        raise NotImplementedError(f"{self.name}: stacked evaluations are for classification")

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

    @torch.no_grad()
    def evaluate_members(
        self, outputs: Callable[[torch.Tensor], torch.Tensor], members: int, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean loss and accuracy on (x, y): `outputs(x_chunk)` gives the stacked
        outputs (members, chunk, ...) of inputs shared by all members; two (members,) tensors."""
        total = torch.zeros(members, device=y.device)
        correct = torch.zeros(members, device=y.device)
        for i in range(0, len(y), self.eval_batch):
            loss_sum, correct_sum = self.member_sums(
                outputs(x[i : i + self.eval_batch]), y[i : i + self.eval_batch]
            )
            total += loss_sum
            correct += correct_sum
        return total / len(y), correct / len(y)

    def sgld_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """devinterp's `evaluate(model, batch) -> loss` hook: the training loss on one batch."""
        x, y = batch
        return self.loss(model(x), y)

    def sgld_member_losses(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The sampler core's `member_losses(model, batch)` for a stacked model: `member_losses`."""
        x, y = batch
        return self.member_losses(model(x), y)


class Classification(Task):
    """Cross-entropy of class logits `model(x)` (shape [batch, classes]) against labels `y`."""

    name = "classification"

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, y)

    def _member_cross_entropy(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # One flat cross-entropy instead of a vmapped one: the same numbers, a third of the time.
        y = _per_member_targets(output, y)
        return F.cross_entropy(output.flatten(0, 1), y.flatten(), reduction="none").view(y.shape[0], -1)

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._member_cross_entropy(output, y).mean(1)

    def member_sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per = self._member_cross_entropy(output, y)
        return per.sum(1), (output.argmax(-1) == y).sum(1)

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
