"""A generated data set of one's own: noisy waves, one frequency per class (in the spirit of MNIST-1D).

The product calls `waves(...)` with the settings in conf/dataset/waves.yaml and takes the four arrays
it returns (docs/bring-your-own.md lists every form a data-set function may return).
"""

import numpy as np


def waves(
    n: int = 2000,
    length: int = 64,
    classes: int = 10,
    noise: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.5,
):
    """`n` signals of `length` samples: class k is a sine of k + 1 periods with a random phase and
    amplitude, plus Gaussian noise. Returns (x_train, y_train, x_test, y_test), x shaped (n, 1, length)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    t = np.linspace(0.0, 1.0, length)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    amplitude = rng.uniform(0.5, 1.5, (n, 1))
    x = amplitude * np.sin(2 * np.pi * (y[:, None] + 1) * t + phase) + noise * rng.standard_normal(
        (n, length)
    )
    x = x[:, None, :].astype(np.float32)  # one channel; float32, as the models' weights are
    split = int(n * (1 - test_fraction))
    return x[:split], y[:split], x[split:], y[split:]
