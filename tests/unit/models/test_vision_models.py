"""The vision models: the paper's parameter counts, their init, and pretrained torchvision nets."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from pipeline.errors import UserError
from pipeline.models import MLP, ConvNet, ResidualNet, TorchvisionNet, num_params, num_weights
from tests.helpers.config import ROOT
from tests.helpers.data_files import write_weights

# (channels, count) rows of the paper's Tables 5 and 6, for 3x32x32 inputs and 10 classes.
TABLE_5 = [([32], 1184), ([32, 64], 19936), ([32, 64, 128], 94304), ([64, 128, 256], 372928)]
TABLE_6 = [
    ([32], 1216),
    ([16, 32, 64], 208448),
    ([32, 64], 167424),
    ([32, 64, 128], 831616),
    ([16, 32, 64, 128], 872640),
]
# Table 7's counts by hidden widths (the input 784 and the 10-way output are implied).
TABLE_7 = {
    (256, 128, 64): 242304,
    (128, 64, 128, 64): 125568,
    (128, 64, 32, 64, 32, 64): 117376,
    (256, 128, 64, 32, 16): 244384,
    (128, 64, 128, 64, 32): 127296,
    (128, 64, 128, 64, 16): 126112,
    (128, 64, 32, 64, 32, 64, 32, 64): 121472,
    (128, 64, 128): 118016,
    (128, 64): 109184,
    (128, 64, 32, 64, 32, 64, 32, 64, 32, 64): 125568,
    (256, 128): 234752,
    (128, 64, 128, 64, 128, 64, 32): 143680,
    (128, 64, 128, 64, 128, 64): 141952,
    (128, 64, 128, 64, 128): 134400,
    (128, 64, 128, 64, 256): 143872,
    (256, 128, 64, 32): 244032,
    (128, 64, 128, 64, 128, 64, 128, 64): 158336,
    (128, 64, 32): 110912,  # Table 8
}


@pytest.mark.parametrize("channels,count", TABLE_5)
def test_conv_nets_have_table_5_weight_counts(channels, count) -> None:
    assert num_weights(ConvNet((3, 32, 32), 10, channels)) == count


@pytest.mark.parametrize("channels,count", TABLE_6)
def test_residual_nets_have_table_6_counts(channels, count) -> None:
    m = ResidualNet((3, 32, 32), 10, channels)
    # Table 6 counts the kernels and matrices and the stem's batch-norm scale.
    assert num_weights(m) + m.stem[1].weight.numel() == count
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_mnist_architecture_sweep_is_table_7_with_its_counts() -> None:
    exp = OmegaConf.load(ROOT / "conf" / "experiment" / "mnist_architectures.yaml")
    text = exp.hydra.sweeper.params["model.hidden"].replace(" ", "")
    swept = [tuple(int(h) for h in part.split(",")) for part in text.strip("[]").split("],[")]
    assert len(swept) == 18 and set(swept) == set(TABLE_7)
    for hidden in swept:
        assert num_weights(MLP(784, 10, hidden, batch_norm=True)) == TABLE_7[hidden]


def test_conv_and_residual_init_is_xavier_with_zero_bias() -> None:
    torch.manual_seed(0)
    for m in (ConvNet((3, 32, 32), 10, [32, 64]), ResidualNet((3, 32, 32), 10, [16, 32])):
        for layer in m.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                w = layer.weight
                fan_in = w[0].numel()
                fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
                bound = math.sqrt(6 / (fan_in + fan_out))
                assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
                assert torch.all(layer.bias == 0)


def test_image_models_refuse_flat_data() -> None:
    with pytest.raises(UserError, match="in_shape"):
        ConvNet((64,), 10)


def test_torchvision_net_loads_local_weights_and_freezes_the_backbone(tmp_path: Path) -> None:
    state = write_weights(tmp_path / "r18.pth")
    m = TorchvisionNet("resnet18", 7, weights=str(tmp_path / "r18.pth"), input_size=64)
    assert torch.equal(m.net.conv1.weight, state["conv1.weight"])
    assert m.head.out_features == 7 and m.net.fc is m.head
    assert num_params(m) == 512 * 7 + 7  # only the new head trains
    m.train()
    assert m.head.training and not m.net.layer1.training  # frozen batch norm keeps its statistics
    before = m.net.bn1.running_mean.clone()
    m(torch.randn(4, 3, 16, 16))
    assert torch.equal(m.net.bn1.running_mean, before)
    full = TorchvisionNet("resnet18", 7, weights=str(tmp_path / "r18.pth"), freeze_backbone=False)
    assert num_params(full) == 11_689_512 - 513_000 + 512 * 7 + 7  # torchvision's count, new head


def test_torchvision_net_without_weights_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as e:
        TorchvisionNet("resnet34", 200)
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth") in msg
    assert "pretrained=false" in msg and "\n" not in msg
    with pytest.raises(UserError, match="nowhere.pth"):
        TorchvisionNet("vgg11", 200, weights=str(tmp_path / "nowhere.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(UserError, match="not a torchvision resnet18 state dict"):
        TorchvisionNet("resnet18", 200, weights=str(tmp_path / "empty.pth"))


@pytest.mark.parametrize(
    "arch,head_in", [("resnet18", 512), ("resnet34", 512), ("vgg11", 4096), ("vgg16", 4096)]
)
def test_every_architecture_gets_a_new_head(arch, head_in) -> None:
    m = TorchvisionNet(arch, 200, pretrained=False, input_size=32)
    assert (m.head.in_features, m.head.out_features) == (head_in, 200)
    assert num_params(m) == head_in * 200 + 200


def test_resize_and_chunked_evaluation_match_one_pass() -> None:
    torch.manual_seed(0)
    m = TorchvisionNet("resnet18", 5, pretrained=False, input_size=24, eval_chunk=3)
    m.eval()
    x = torch.randn(7, 3, 16, 16)
    with torch.no_grad():
        chunked = m(x)
        whole = m.net(torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear"))
    assert torch.allclose(chunked, whole, atol=1e-5)
