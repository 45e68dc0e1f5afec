"""A model of one's own: a small 1-D convolutional net.

The product builds it with the settings in conf/model/conv1d.yaml and passes the sizes its
constructor names, taken from the data: here `in_shape` (channels, length) and `num_classes`.
"""

from torch import nn


class Conv1d(nn.Module):
    def __init__(self, in_shape: tuple[int, int], num_classes: int, channels: int = 16, kernel: int = 9):
        super().__init__()
        c, length = in_shape
        self.net = nn.Sequential(
            nn.Conv1d(c, channels, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Flatten(),
            nn.Linear(channels * (length // 4), num_classes),
        )

    def forward(self, x):
        return self.net(x)
