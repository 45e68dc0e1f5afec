"""The vision models: the CIFAR10 conv and residual nets of Tables 5 and 6, and torchvision classifiers
with a new head for the Tiny ImageNet fine-tuning (appendix G.2). Plain torch."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import UserError


def _xavier_zero_bias(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv and linear layer (appendix I.3)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvNet(nn.Module):
    """The CIFAR10 conv nets of Table 5: one 3x3 conv + ReLU + 2x2 max-pool per entry of
    `channels`, global average pooling, a linear head. Xavier init, zero bias.

    Weight counts for 3x32x32 inputs and 10 classes equal Table 5's: [32] 1184, [32, 64] 19936,
    [32, 64, 128] 94304, [64, 128, 256] 372928 (see `num_weights`).
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32,)) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise UserError(f"ConvNet needs image data (channels, height, width), got in_shape={in_shape}")
        layers: list[nn.Module] = []
        width = int(in_shape[0])
        for c in channels:
            layers += [nn.Conv2d(width, int(c), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            width = int(c)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        _xavier_zero_bias(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: two 3x3 convs at constant width, identity shortcut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ResidualNet(nn.Module):
    """The CIFAR10 residual nets of Table 6.

    A 3x3 stem conv to `channels[0]` with batch norm; then, for every further entry c, a 3x3
    conv to c with 2x2 max-pool and `blocks` residual blocks of width c; global average pooling
    and a linear head. Xavier init, zero bias. With blocks=2 the weights (`num_weights`) plus
    the stem's batch-norm scale reproduce all five counts of Table 6 (1216, 208448, 167424, 831616,
    872640), so this is the layout those counts imply (the paper gives no other description).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        blocks: int = 2,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise UserError(
                f"ResidualNet needs image data (channels, height, width), got in_shape={in_shape}"
            )
        c0 = int(channels[0])
        self.stem = nn.Sequential(
            nn.Conv2d(int(in_shape[0]), c0, 3, padding=1), nn.BatchNorm2d(c0), nn.ReLU()
        )
        stages: list[nn.Module] = []
        width = c0
        for c in channels[1:]:
            stages += [nn.Conv2d(width, int(c), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            stages += [ResidualBlock(int(c)) for _ in range(int(blocks))]
            width = int(c)
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(width, num_classes)
        _xavier_zero_bias(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


# torchvision classifiers the Tiny ImageNet experiment fine-tunes, and where each keeps its head.
_HEADS = {"resnet18": "fc", "resnet34": "fc", "vgg11": "classifier.6", "vgg16": "classifier.6"}


def pretrained_weights_path(arch: str) -> Path:
    """Where torchvision's cache keeps `arch`'s ImageNet weights (what `pretrained=true` reads)."""
    from torchvision.models import get_model_weights

    url = get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class TorchvisionNet(nn.Module):
    """A torchvision ResNet18/34 or VGG11/16 with its ImageNet head replaced by a new
    `num_classes`-way linear layer (appendix G.2).

    `pretrained` loads ImageNet weights from `weights` (a state-dict file) or, when that is null,
    from torchvision's cache; nothing is downloaded. `freeze_backbone` leaves only the new head
    trainable, and keeps the frozen backbone in eval mode so it is a fixed feature extractor (its
    batch-norm statistics do not drift during training or SGLD). Inputs are resized bilinearly
    to `input_size` on the device, per batch (the paper resizes Tiny ImageNet's 64x64 to 224),
    and forward passes without gradients run in chunks of `eval_chunk` so evaluation of a whole
    data set fits in memory.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        pretrained: bool = True,
        weights: str | None = None,
        freeze_backbone: bool = True,
        input_size: int | None = 224,
        eval_chunk: int = 256,
    ) -> None:
        super().__init__()
        import torchvision

        if arch not in _HEADS:
            raise UserError(f"model.arch={arch}: choose from {', '.join(_HEADS)}")
        path = (
            (Path(weights).expanduser() if weights else pretrained_weights_path(arch)) if pretrained else None
        )
        if path is not None and not path.is_file():  # before building: VGG16 alone takes seconds
            raise UserError(
                f"no pretrained {arch} weights at {path}: copy torchvision's {path.name} there, "
                "set model.weights=<state-dict file>, or model.pretrained=false"
            )
        net = torchvision.models.get_model(arch, weights=None)
        if path is not None:
            try:
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as e:  # not a state dict
                why = (str(e).splitlines() or [type(e).__name__])[0]
                raise UserError(f"{path} is not a torchvision {arch} state dict: {why}") from None
        parent_name, _, attr = _HEADS[arch].rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        old = getattr(parent, attr)
        if freeze_backbone:
            for p in net.parameters():
                p.requires_grad_(False)
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))  # new head, trainable
        self.net, self.head = net, getattr(parent, attr)
        self.freeze_backbone = bool(freeze_backbone)
        self.input_size = int(input_size) if input_size else None
        self.eval_chunk = int(eval_chunk)

    def train(self, mode: bool = True) -> TorchvisionNet:
        super().train(mode)
        if self.freeze_backbone:  # a frozen backbone stays a fixed function: eval mode, head follows `mode`
            self.net.eval()
            self.head.train(mode)
        return self

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or len(x) <= self.eval_chunk:
            return self._forward(x)
        return torch.cat([self._forward(c) for c in x.split(self.eval_chunk)])
