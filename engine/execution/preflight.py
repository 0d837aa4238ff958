"""Checks a run's models before any stage starts, so a wrong path, a model missing from the Hugging Face cache or a
missing key fails in a second with the config key that names it, not minutes later inside a Ray actor.

The per-backend rules live with the backends (actors.registry.check_model): a folder, a packaged model, or a hub id
found in the cache (or, with hub access on, known to the hub); options the backend takes (a misspelt one names the
closest); for a generator behind an HTTP endpoint, a temperature and top_p the endpoint serves as labelled
(actors.registry.check_sampling). This module walks the config's roles.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from actors.base import SamplingParams
from actors.registry import ModelCheckError, check_model, check_sampling, pinned_weights, stated_context
from engine.config import CALIBRATED, RunConfig
from engine.errors import ConfigError
from engine.method.programs import first_token_sampling

# What an endpoint probe sends (execution.probe_endpoints): no stage's text — what comes back is not stored, judged or
# counted — so it is not in engine.method.taxonomy. A few tokens: the probe asks whether the request is served.
PROBE_CONVERSATION = ({"role": "user", "content": "Reply with the word OK."},)
PROBE_MAX_TOKENS = 16


def check_role(where: str, role: str, backend: str, model: str, options: dict, offline: bool = True,
               deferred: list[str] | None = None) -> None:
    """Raise ConfigError naming `where` (e.g. "judges[1]") and the key when the model cannot be served.

    `deferred`: the run joins a cluster, whose nodes check every model again where it will run; a model this
    machine cannot find (a folder on the GPU nodes' disks only, a cache only they have, vLLM installed on the GPU
    nodes only) is noted there, not refused.
    """
    try:
        check_model(role, backend, model, options, offline=offline)
    except ModelCheckError as exc:
        if deferred is not None and exc.key in ("model", "backend"):  # a node may have what this machine lacks
            deferred.append(f"{where}.{exc.key}: {exc}")
            return
        raise ConfigError(f"{where}.{exc.key}: {exc}") from None


def hub_offline() -> bool:
    """Whether this process may not reach the Hugging Face hub (HF_HUB_OFFLINE), for commands without a run config."""
    from actors.registry import env_offline

    return env_offline()


def generator_keys(config: RunConfig) -> list[str]:
    """Each generator's key in the config as written ("generators[1]" for every value of a sweep of the second)."""
    return getattr(config, "generator_keys", None) or [f"generators[{k}]" for k in range(len(config.generators))]


def model_roles(config: RunConfig) -> list[tuple[str, str, object]]:
    """(config key, role, model config) of every model the run loads: generators (unless responses come from a file),
    LLM judges, the classifier, the embedder, the reward model."""
    out: list[tuple[str, str, object]] = []
    if config.prompts.source != "responses":
        out += [(key, "chat", m) for key, m in zip(generator_keys(config), config.generators)]
    out += [(f"judges[{k}]", "chat", m) for k, m in enumerate(config.judges) if m.backend != CALIBRATED]
    if config.classifier is not None:
        out.append(("classifier", "chat", config.classifier))
    out.append(("embedder", "embed", config.embedder))
    if config.quality.reward_model is not None:
        out.append(("quality.reward_model", "reward", config.quality.reward_model))
    return out


def _check_calibrated(where: str, model: str, embedder: str, key: str = "model", backend: str = "local") -> None:
    """A calibrated judge's (or the cascade's) coefficients load and were fitted with the run's embedder: the same
    model, on the backend `calibrate` fits with (local sentence-transformers)."""
    from engine.method.calibrated import CalibratedJudge

    try:
        coefficients = CalibratedJudge.load(None if model == "default" else model)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None
    if coefficients.embedder != embedder:
        raise ConfigError(f"{where}.{key}: the coefficients were fitted with embedder {coefficients.embedder!r}, "
                          f"but embedder.model is {embedder!r} (their features would not be comparable)")
    if backend != "local":
        # A server may name another model (or truncate or pool otherwise) under the same id: the cosine features
        # would move unseen, and with them every probability.
        raise ConfigError(f"{where}.{key}: the coefficients were fitted with the local embedder {embedder!r} "
                          f"(`calibrate` embeds with sentence-transformers), but embedder.backend is {backend!r}: "
                          "set embedder.backend: local for the calibrated judge and the cascade")


def preflight(config: RunConfig, offline: bool | None = None, deferred: list[str] | None = None) -> None:
    """Check every model of the run (generators unless responses come from a file, classifier, judges, embedder,
    reward model). `offline`: hub access for hub ids (default: the config's models.offline). `deferred`: see
    check_role (a run joining a cluster)."""
    offline = config.models.resolved_offline() if offline is None else offline
    # Every problem at once: a run stopped at the first (a key not set) was found to have the next only when the
    # user ran it again — on the vLLM environment, 75 s an attempt.
    problems: list[str] = []

    def collect(check: Callable[..., None], *args: Any) -> None:
        try:
            check(*args)
        except ConfigError as exc:
            problems.append(str(exc))

    collect(_check_context, config)
    collect(_check_calibrated_judges, config)
    for where, role, m in model_roles(config):
        collect(check_role, where, role, m.backend, m.model, checked_options(role, m), offline, deferred)
        if where.startswith("generators"):
            collect(_check_generator_sampling, config, where, m)
    if not problems:  # the devices the models ask for: meaningful once the models themselves pass
        collect(_check_devices if config.execution.executor == "ray" else _check_local_devices, config)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems, before any model was called:\n" +
                          "\n".join(f"  - {p}" for p in dict.fromkeys(problems)))


def checked_options(role: str, m: Any) -> dict[str, Any]:
    """A model's options as its check reads them, here and on a cluster's nodes: a reward model's with its `kind`
    (the head it reads, as it loads; without it a node checked `auto` and refused a kind the user had set)."""
    return {**m.options, "kind": m.kind} if role == "reward" else m.options


def _check_generator_sampling(config: RunConfig, where: str, m: Any) -> None:
    try:
        check_sampling(m.backend, m.options, *_generator_sampling(config, m))
    except ModelCheckError as exc:
        raise ConfigError(f"{where}.{exc.key} ({m.name}): {exc}") from None


def pin_weights(config: RunConfig, offline: bool) -> tuple[RunConfig, list[str]]:
    """The config with every model that loads its own weights pinned to the weights it loads now
    (actors.registry.pinned_weights): a hub id to its commit ("org/name@<commit>": the shard keys and every worker's
    load), a local folder with a digest of its weights (`weights`). An id as written is a branch that moves, or a
    folder a checkpoint may be trained into again: a rerun read the old weights' shards beside new ones, and nodes
    with caches of their own could load different snapshots in one run. Returns the pinned copy (the config given is
    left as written) and a note for each hub id neither the cache nor the hub resolved here (keyed as written)."""
    pinned = copy.deepcopy(config)  # one copy: a model in two roles (the classifier that also generates) stays one
    notes: list[str] = []
    resolved: dict[tuple[str, str, str | None], tuple[str, str] | None] = {}
    for where, _, m in model_roles(pinned):
        revision = m.options.get("revision") if m.backend == "vllm" else None
        revision = revision if isinstance(revision, str) and revision else None
        key = (m.backend, m.model, revision)
        if key not in resolved:
            resolved[key] = pinned_weights(m.backend, m.model, offline, revision)
        if resolved[key] is None:
            notes.append(f"{where}.model: {m.model!r} resolves to no commit here (not in this machine's Hugging Face "
                         "cache, and the hub not reached): its shards are keyed by the id as written, which a later "
                         "push to the model moves unseen; pin it as org/name@<commit> for an audit resumed over time")
            continue
        m.model, m.weights = resolved[key]
    return pinned, notes


def check_written_config(config: RunConfig) -> list[str]:
    """The checks of preflight that read the config alone (engine/run.py plan runs them: a misspelt option or a bad
    price passed the plan, priced as "unknown", and stopped the run): ConfigError naming the key. Returns notes on
    what the run will need of its machine that this one lacks (an API key not set here)."""
    import os

    from actors.registry import check_written, names_hub_model

    notes = []
    _check_calibrated_judges(config)
    _check_context(config)
    for where, role, m in model_roles(config):
        try:
            check_written(role, m.backend, m.model, m.options)
        except ModelCheckError as exc:
            raise ConfigError(f"{where}.{exc.key}: {exc}") from None
        if where.startswith("generators"):  # the sampling an endpoint would serve under another label
            _check_generator_sampling(config, where, m)
    if config.execution.executor == "ray":  # a model told to use a GPU it does not reserve (the config alone)
        _check_devices(config)
    for where, role, m in model_roles(config):
        key_env = m.options.get("api_key_env") if m.backend == "http" else None
        if key_env and not (os.environ.get(key_env) or "").strip():
            notes.append(f"{where}.options.api_key_env: {key_env} is not set here; the run needs it")
        elif m.backend != "http" and (config.models.resolved_offline() or not names_hub_model(m.model)):
            # A model this machine cannot find (a folder, a cache entry, vLLM): plan exited 0 where the run
            # refuses it — said as a note, since the run may be meant for another machine (a cluster's nodes).
            # Checked offline (plan never reaches the network): a hub id under hub access is the run's to fetch.
            found: list[str] = []
            try:
                check_role(where, role, m.backend, m.model, m.options, offline=True, deferred=found)
            except ConfigError:
                pass  # not the machine's: the config's own problems were refused above
            notes += [f"{problem} — a run on this machine would refuse it" for problem in found]
    return notes


def _check_calibrated_judges(config: RunConfig) -> None:
    """The calibrated judges' coefficients and the cascade's (plan checked the judges' only: a cascade naming a
    missing file passed it and stopped the run)."""
    for k, m in enumerate(config.judges):
        if m.backend == CALIBRATED:
            _check_calibrated(f"judges[{k}]", m.model, config.embedder.model, backend=config.embedder.backend)
    if config.judge.cascade.enabled:
        _check_calibrated("judge.cascade", config.judge.cascade.coefficients or "default", config.embedder.model,
                          key="coefficients", backend=config.embedder.backend)


def _check_context(config: RunConfig) -> None:
    """A vLLM generator's max_model_len must hold what a system-prompt strategy asks: all n responses in one
    completion (n × sampling.max_tokens), which vLLM refuses past the context. Every such group failed row by row at
    generation, while the other strategies' groups were judged and paid for. (In-context regeneration's last turn
    reaches that length only if every response before it ran to its limit: not refused.)"""
    if config.prompts.source == "responses":
        return
    long = [s for s in config.strategies if s.startswith("system_")]
    need = config.n * config.sampling.max_tokens
    for key, m in zip(generator_keys(config), config.generators):
        if m.backend == "local" and long:
            _check_local_context(config, key, m, long, need)
        if m.backend != "vllm" or not long:
            continue
        limit = (m.options or {}).get("max_model_len")
        # Without the option, vLLM takes the model's own context: a 4k model (Llama-2, Phi-3-mini-4k) under n 5 ×
        # 1,024 tokens failed every system-prompt group as an explicit 4,096 would have.
        stated = None if limit is not None else stated_context(m.model)
        if isinstance(limit, int) and not isinstance(limit, bool) and need >= limit:
            raise ConfigError(f"{key}.options.max_model_len ({m.name}): {limit} tokens cannot hold the "
                              f"{need} that {', '.join(long)} ask for (n {config.n} × sampling.max_tokens "
                              f"{config.sampling.max_tokens}, before the prompt): raise max_model_len, or lower n or "
                              "sampling.max_tokens")
        if stated is not None and need >= stated:
            raise ConfigError(f"{key}.model ({m.name}): its context of {stated} tokens (max_position_"
                              f"embeddings in its config.json, which vLLM serves without options.max_model_len) "
                              f"cannot hold the {need} that {', '.join(long)} ask for (n {config.n} × "
                              f"sampling.max_tokens {config.sampling.max_tokens}, before the prompt): lower n or "
                              "sampling.max_tokens, or pick a model with a longer context")


def _check_local_context(config: RunConfig, key: str, m: Any, long: list[str], need: int) -> None:
    """The local backend serves at most options.max_context tokens of prompt and completion, never past the model's
    own context: a budget past either passed preflight and failed every system-prompt group at generation, while the
    other strategies' groups were paid for. (A packaged model states its context only once loaded: not checked.)"""
    limit = (m.options or {}).get("max_context")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        return  # the option's own check names a bad value
    stated = stated_context(m.model)
    known = [c for c in (limit, stated) if c]
    if known and need >= min(known):
        why = f"options.max_context {limit}" if limit and (not stated or limit < stated) else \
            f"its context of {stated} tokens (max_position_embeddings in its config.json)"
        raise ConfigError(f"{key}.options.max_context ({m.name}): {why} cannot hold the {need} tokens that "
                          f"{', '.join(long)} ask for (n {config.n} × sampling.max_tokens {config.sampling.max_tokens}"
                          f", before the prompt): raise options.max_context, or lower n or sampling.max_tokens")


def _generator_sampling(config: RunConfig, m) -> tuple[float, float]:
    """A generator's (temperature, top_p): its own, else the run's. After RunConfig's sweep expansion each value of a
    sweep is a generator entry of its own, so both are single values."""
    return (m.temperature if m.temperature is not None else config.sampling.temperature,
            m.top_p if m.top_p is not None else config.sampling.top_p)


def _devices(config: RunConfig) -> list[tuple[str, Any, str]]:
    """(config key, model config, its options.device lower-cased, "" where unset) of every model of the run."""
    return [(where, m, str((m.options or {}).get("device") or "").lower()) for where, _, m in model_roles(config)]


def _check_devices(config: RunConfig) -> None:
    """Under Ray, a model told to run on a GPU (`options.device: cuda…`) must reserve one (`num_gpus`): Ray 2.60 no
    longer hides a node's GPUs from an actor that reserved none, so it would load onto a GPU another model's actor
    reserved (vLLM claims 90% of its memory: one of them runs out), or fail on a node without one."""
    for where, m, device in _devices(config):
        if m.backend != "vllm" and device.startswith(("cuda", "gpu")) and not m.num_gpus:
            raise ConfigError(f"{where}.num_gpus: options.device is {device!r} but the model reserves no GPU "
                              "(num_gpus: 0): under Ray it would take a GPU another model reserved; set num_gpus: 1")


def _check_local_devices(config: RunConfig) -> None:
    """In this process (the local executor), a model told to run on a CUDA device needs one torch can use: without,
    it failed when that model loaded, after the stages before it had run (and been paid for)."""
    wanted = [(where, m, device) for where, m, device in _devices(config)
              if m.backend in ("local", "vllm") and device.startswith("cuda")]
    if not wanted:
        return
    import torch  # only for a run that asks for CUDA (importing torch costs seconds)

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for where, m, device in wanted:
        index = device.partition(":")[2]
        if count == 0 or (index.isdigit() and int(index) >= count):
            build = "" if torch.version.cuda else ", a CPU build"
            have = f"{count} CUDA device(s)" if count else \
                f"no CUDA device torch can use (torch {torch.__version__}{build})"
            name = getattr(m, "name", None) or m.model
            raise ConfigError(f"{where}.options.device ({name}): {device!r}, but this machine has {have}; use "
                              "device: cpu, or run where the GPU is")


def endpoint_probes(config: RunConfig) -> list[tuple[str, str, object, list[SamplingParams]]]:
    """(config key, role, model config, sampling settings) of each HTTP model's first requests
    (actors.registry.probe_model): a generator's temperature and top_p (each value of a sweep is its own generator
    entry by now) with the run's seed; a judge's settings as it judges (greedy; a few tokens with log-probs unless its
    verdict is read from text); the classifier's greedy ones; nothing for an embedder (it is asked for one embedding).
    Budgets are cut to PROBE_MAX_TOKENS."""
    out = []
    for where, role, m in model_roles(config):
        if m.backend != "http":
            continue
        if role == "embed":
            samplings = []
        elif where.startswith("generators"):
            temperature, top_p = _generator_sampling(config, m)
            samplings = [SamplingParams(temperature=temperature, top_p=top_p, seed=config.sampling.seed,
                                        max_tokens=min(config.sampling.max_tokens, PROBE_MAX_TOKENS))]
        elif where.startswith("judges"):
            first = first_token_sampling(m.verdict, config.judge.max_tokens)
            fallback = first.max_tokens_without_logprobs
            samplings = [first.with_(max_tokens=min(first.max_tokens, PROBE_MAX_TOKENS),
                                     max_tokens_without_logprobs=min(fallback, PROBE_MAX_TOKENS) if fallback else None)]
        else:
            samplings = [SamplingParams(temperature=0.0, max_tokens=PROBE_MAX_TOKENS)]
        out.append((where, role, m, samplings))
    return out
