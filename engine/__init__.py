"""taskdiv's engine: audit how homogeneous a language model's outputs are, task by task.

Layers, each importing only those above it in this list:
    config, errors    the run configuration (typed, validated on load) and the errors a user can act on
    method/           the paper's method: taxonomy and every text sent to a model, parsing, programs, strategies,
                      judges, quality, accuracy, components, the calibrated judge
    inputs/           prompts, sources, benchmark loaders, responses from elsewhere, labelled pairs
    stages/           the batch contract and one thin adapter per stage
    execution/        the pipeline, executors, the run directory, tables, results, preflight
    report/           report.json/md/html, figures, statistics, comparisons of runs
    cli/              the command line (`python engine/run.py …`, the `taskdiv` script)
    api               a short Python API for notebooks: `engine.api.run(config)`
actors/ (model runtimes) and kernels/ (Numba kernels) sit beside it and never import it.
"""
