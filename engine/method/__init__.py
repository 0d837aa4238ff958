"""The method of Jain et al. (arXiv 2509.21267), independent of how and where it runs.

- `taxonomy`: the eight task categories and EVERY text sent to any model (prompts, reminders, marks), with the
  per-stage fingerprints that key shards;
- `parsing`: one pattern per kind of answer, None when it does not match;
- `programs`: conversational programs, `drive` (lockstep rounds, or continuous on a backend that takes requests one
  at a time), and the one `ask_until_parsed` protocol;
- `strategies` (registry of sampling strategies), `classification`, `judges` (pairwise verdicts with union-find
  pruning), `quality` (checklists and grades), `accuracy` and `math` (verifiable answers), `components` (unique
  responses);
- the calibrated cheap judge: `features` (the similarity matrices it shares with the metrics), `pair_features`,
  `calibrated`, `calibrate` (fitting), and `agreement` with human labels; `class_measures` and `rewards` from the
  judges' classes.

May import: actors.base (the backend interface), actors.registry (building a backend by name), kernels,
engine.config, engine.errors, engine.inputs (labelled pairs). Never engine.stages, execution, report or cli.
"""
