"""The models the experiments train, and the tasks (losses) they are trained on. Plain torch; built
from config by `hydra.utils.instantiate` (`_target_: pipeline.models.<name>`)."""

from pipeline.models.counts import num_params, num_weights
from pipeline.models.embedding import EmbeddingMLP
from pipeline.models.language import causal_lm
from pipeline.models.mlp import MLP
from pipeline.models.vision import ConvNet, ResidualNet, TorchvisionNet

__all__ = [
    "MLP",
    "ConvNet",
    "EmbeddingMLP",
    "ResidualNet",
    "TorchvisionNet",
    "causal_lm",
    "num_params",
    "num_weights",
]
