"""almost-bayesian: train -> llc -> fit, tracked in MLflow.

Plain torch/numpy modules (`models`, `data`, `displacement`, `exponent`) know nothing of Hydra or
MLflow; `tracking` is the only module that talks to MLflow; `train`, `llc` and `fit` are the stages,
each re-runnable on an existing run; `run` chains them for one Hydra job.
"""
