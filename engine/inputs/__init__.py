"""Inputs: what a run reads before any model is called.

Prompt records and our JSONL format (`prompts`), prompt sources by name (`sources`), the public benchmarks'
loaders (`loaders/`), responses generated elsewhere (`responses`), and human-labelled response pairs
(`labelled_pairs`). Bad rows are InputErrors naming file, line and field.

May import: engine.errors, engine.config, engine.method.taxonomy (category letters). Never execution, report or
cli, and no model backend.
"""
