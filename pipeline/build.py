"""Config -> objects, through `hydra.utils.instantiate` only."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from pipeline.data import Data
from pipeline.errors import UserError


def data(cfg: DictConfig) -> Data:
    try:
        return instantiate(cfg.dataset)
    except UserError:
        raise
    except Exception as e:  # instantiate wraps the loader's own UserError
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise


def model(cfg: DictConfig, d: Data) -> nn.Module:
    """The model, with input/output sizes from the data; seeded so `seed` fixes w_0."""
    torch.manual_seed(int(cfg.seed))
    return instantiate(cfg.model, in_features=d.in_features, out_features=d.num_classes).to(cfg.device)


def optimizer(cfg: DictConfig, m: nn.Module) -> torch.optim.Optimizer:
    return instantiate(cfg.optimizer)(m.parameters())
