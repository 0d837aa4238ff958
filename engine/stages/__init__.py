"""Stages: the batch contract (`base`) and one thin adapter per stage — classify, sample, judge, metrics,
checklist, grade, accuracy, reward — each pairing a per-worker callable (the model built once per actor) with the
method's programs from engine.method.

Stages do no file I/O and parse no flags: the pipeline builds their arguments and the store persists their rows.

May import: engine.method, engine.config (settings sections), actors.base, actors.registry, kernels. Never
engine.execution, report or cli.
"""
