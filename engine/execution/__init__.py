"""Execution: running a config's stages over shards, where and how.

`pipeline` (the run: units keyed by content, resume, the frame of groups, when each model's hosts are released),
`dataflow` (one stage's units written as they complete, and the stages from sampling on streaming into each other),
`executor` (Ray actors or in-process), `hosts` (the workers that keep each model loaded for every stage using it),
`store` (the run directory: atomic Parquet shards), `tables` (schemas and the long-form views),
`results` (RunResult and stage records, and reading a finished run back), `preflight` (checks before any model
call), `resources` (peak memory).

May import: engine.config, engine.errors, engine.inputs, engine.method, engine.stages, actors.base,
actors.registry, kernels. Never engine.report or engine.cli.
"""
