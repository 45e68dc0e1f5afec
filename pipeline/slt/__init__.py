"""The science, knowing neither MLflow nor Hydra: the stacked model, the SGLD sampler core and λ,
displacement R(t), exponent fitting and d_s, tempering, clusters, the posterior sampler."""
