"""Checks a run's models before any stage starts, so a wrong path, a model missing from the Hugging Face cache or a
missing key fails in a second with the config key that names it, not minutes later inside a Ray actor.

The per-backend rules live with the backends (actors.registry.check_model): a folder, a packaged model, or a hub id
found in the cache (or, with hub access on, known to the hub); options the backend takes (a misspelt one names the
closest); for a generator behind an HTTP endpoint, a temperature and top_p the endpoint serves as labelled
(actors.registry.check_sampling). This module walks the config's roles.
"""

from __future__ import annotations

from actors.registry import ModelCheckError, check_model, check_sampling
from engine.config import CALIBRATED, RunConfig
from engine.errors import ConfigError


def check_role(where: str, role: str, backend: str, model: str, options: dict, offline: bool = True) -> None:
    """Raise ConfigError naming `where` (e.g. "judges[1]") and the key when the model cannot be served."""
    try:
        check_model(role, backend, model, options, offline=offline)
    except ModelCheckError as exc:
        raise ConfigError(f"{where}.{exc.key}: {exc}") from None


def _check_calibrated(where: str, model: str, embedder: str) -> None:
    """A calibrated judge's coefficients load and were fitted with the run's embedder."""
    from engine.method.calibrated import CalibratedJudge

    try:
        coefficients = CalibratedJudge.load(None if model == "default" else model)
    except ConfigError as exc:
        raise ConfigError(f"{where}.model: {exc}") from None
    if coefficients.embedder != embedder:
        raise ConfigError(f"{where}.model: the coefficients were fitted with embedder {coefficients.embedder!r}, "
                          f"but embedder.model is {embedder!r} (their features would not be comparable)")


def preflight(config: RunConfig, offline: bool | None = None) -> None:
    """Check every model of the run (generators unless responses come from a file, classifier, judges, embedder,
    reward model). `offline`: hub access for hub ids (default: the config's models.offline)."""
    offline = config.models.resolved_offline() if offline is None else offline
    roles = [("judges", config.judges)]
    if config.prompts.source != "responses":
        roles.insert(0, ("generators", config.generators))
    for role, models in roles:
        for k, m in enumerate(models):
            if m.backend == CALIBRATED:
                _check_calibrated(f"{role}[{k}]", m.model, config.embedder.model)
                continue
            check_role(f"{role}[{k}]", "chat", m.backend, m.model, m.options, offline)
            if role == "generators":
                temperature = m.temperature if m.temperature is not None else config.sampling.temperature
                top_p = m.top_p if m.top_p is not None else config.sampling.top_p
                try:
                    check_sampling(m.backend, m.options, temperature, top_p)
                except ModelCheckError as exc:
                    raise ConfigError(f"{role}[{k}].{exc.key} ({m.name}): {exc}") from None
    if config.classifier is not None:
        c = config.classifier
        check_role("classifier", "chat", c.backend, c.model, c.options, offline)
    e = config.embedder
    check_role("embedder", "embed", e.backend, e.model, e.options, offline)
    rm = config.quality.reward_model
    if rm is not None:
        check_role("quality.reward_model", "reward", rm.backend, rm.model, rm.options, offline)
