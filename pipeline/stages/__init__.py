"""The stages of a job: train, llc, fit, calibrate, ensemble, posterior. Each reads its inputs back
from the run (so it re-runs alone on an existing run) and writes its records to it; each module's
docstring says what it reads and writes."""
