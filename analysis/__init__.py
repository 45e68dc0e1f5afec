"""Analysis of tracked runs. Reads only the MLflow tracking store, never training code or scratch
files, so it runs on any store (one synced from a cluster included)."""
