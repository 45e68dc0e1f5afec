"""Training, knowing neither MLflow nor Hydra: one model's loop, batched ensembles, phase schedules,
the resume state."""
