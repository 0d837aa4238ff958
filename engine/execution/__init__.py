"""Execution: running a config's stages over shards, where and how.

`pipeline` (the run: units keyed by content, resume, the frame of groups), `executor` (Ray Data actor pools or
in-process), `store` (the run directory: atomic Parquet shards), `tables` (schemas and the long-form views),
`results` (RunResult and stage records, and reading a finished run back), `preflight` (checks before any model
call), `resources` (peak memory).

May import: engine.config, engine.errors, engine.inputs, engine.method, engine.stages, actors.base,
actors.registry, kernels. Never engine.report or engine.cli.
"""
