"""Tuning a bundle's dynamic configuration with Optuna: exit thresholds, frame reuse, pruned variant.

Torch-free; it imports only `edge_runtime` (DESIGN.md). Trials are cheap: every stage's exit scores are
computed once per image (`scores`), each trial's policy is simulated on them (`simulate`), and frame reuse on
a video's patch statistics (`video`). `study` runs a multi-objective Optuna study (accuracy or defect recall
against estimated latency) on any Optuna storage, `choose` picks a point from its Pareto front, and `apply`
writes it into the bundle's manifest.

    >>> from tune.study import TuneJob          # doctest: +SKIP
"""
