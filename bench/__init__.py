"""The benchmark suite (`make bench`, `python -m bench`): the pipeline ("ours", driven through
`python launch.py`) against the straightforward way a researcher writes the same experiment
(`bench/baseline.py`), side by side, on the default job and an MNIST-sized MLP.

Modules: `cases` (the workloads and modes), `proc` (running commands: wall clock, peak memory),
`harness` (the measurements), `one_llc` (one λ estimate alone, both sides), `report` (figures,
table, targets, machine facts), `baseline` (the reference script).
"""
