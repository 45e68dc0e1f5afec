"""The config: its schema (the values' types, checked when Hydra composes), the checks of what a
type cannot say, the hashes, the command-line pre-check, and config -> objects (`build`)."""

from pipeline.config import schema  # noqa: F401  (registers the schema and `${runtime_keys:}`)
