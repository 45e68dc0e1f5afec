"""Data sets held in memory as tensors: the loaders the configs name (`_target_: pipeline.data.<name>`)
and the `Data` container they return. Plain torch/numpy; no MLflow, no Hydra."""

from pipeline.data.container import Data
from pipeline.data.modular import modular_division
from pipeline.data.tabular import digits, moons, synthetic
from pipeline.data.text import synthetic_stories, tinystories
from pipeline.data.vision import cifar10, fashion_mnist, mnist, tinyimagenet

__all__ = [
    "Data",
    "cifar10",
    "digits",
    "fashion_mnist",
    "mnist",
    "modular_division",
    "moons",
    "synthetic",
    "synthetic_stories",
    "tinyimagenet",
    "tinystories",
]
