"""Run configuration: typed, documented, validated on construction.

A run is described by one YAML file (or the built-in demo). Every field has a default where one makes sense; an
unknown key or a value of the wrong type is an error naming the file, the key path and what was expected. The
resolved config (defaults filled in, secrets never included: keys are read from the environment variables the
config names) is saved in the run directory.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from actors import registry
from actors.base import SamplingParams
from engine.errors import ConfigError
from engine.method.strategies import STRATEGIES

log = logging.getLogger(__name__)

class InvalidValue(ConfigError):
    """A value out of range, found when a section is constructed. `key` is relative to the section; the loader
    joins it with the section's path, so the message names the whole key ("embedder.num_actors: must be >= 1")."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def _sampling_error(exc: ValueError) -> InvalidValue:
    """A SamplingParams error as an InvalidValue: "SamplingParams.top_p must be in (0, 1], got 2" → key top_p."""
    key, _, rest = str(exc).removeprefix("SamplingParams.").partition(" ")
    return InvalidValue(key, rest)


# The backend name of the calibrated cheap judge as a judge of its own (ModelConfig.backend).
CALIBRATED = "calibrated"


# Settings that would be ignored (another source's prompts keys, a judge's temperature, a strategy twice) are refused
# when a run is configured; a finished run's config.yaml, written before they were, and a config another reader
# rewrites (rewards: its prompts become the --in file) are read with them taken.
_REFUSE_IGNORED = contextvars.ContextVar("taskdiv_refuse_ignored_settings", default=True)


@contextlib.contextmanager
def lenient_settings():
    """Within it, configs are read without refusing settings that would be ignored (see _REFUSE_IGNORED)."""
    token = _REFUSE_IGNORED.set(False)
    try:
        yield
    finally:
        _REFUSE_IGNORED.reset(token)


@dataclass
class PoolConfig:
    """The actor pool every model role shares (generators, judges, embedder, reward model).

    Attributes:
        num_actors: replicas of the model (one Ray actor each). More replicas, more throughput, more memory.
        num_cpus: logical CPUs each actor reserves. Keep it small on small machines: Ray places an actor only where
            its reservation fits, and actors reserving every CPU leave no room for another model's hosts.
        num_gpus: GPUs each actor reserves. For vLLM it follows from options.tensor_parallel_size ×
            pipeline_parallel_size (a placement group of one-GPU bundles per actor when that is above 1).
        batch_size: rows handed to one actor call. Larger batches keep the engine busy; smaller ones lose less
            work when an actor dies.
    """

    num_actors: int = 1
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    batch_size: int = 32

    def _check_backend(self, role: str, backend: str) -> None:
        if not registry.is_known(role, backend):
            names = ", ".join(registry.backend_names(role, python=role != "reward"))
            raise InvalidValue("backend", f"must be one of {names}, got {backend!r}")

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise InvalidValue("num_actors", f"must be >= 1, got {self.num_actors}")
        for key in ("num_cpus", "num_gpus"):
            if not getattr(self, key) >= 0 or not math.isfinite(getattr(self, key)):  # NaN compared false with 0
                raise InvalidValue(key, f"must be a finite number >= 0, got {getattr(self, key)}")
        if self.batch_size < 1:
            raise InvalidValue("batch_size", f"must be >= 1, got {self.batch_size}")


def _weights(digest: str) -> dict[str, str]:
    """A local checkpoint's digest in an identity where the run took one: other models' keys stay as they were."""
    return {"weights": digest} if digest else {}


def _identity_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that change a model's outputs (transport options — where and how it is reached — left out)."""
    return {k: v for k, v in options.items() if k not in registry.TRANSPORT_OPTIONS}


@dataclass
class ModelConfig(PoolConfig):
    """A model in one role (generator, classifier, judge, grader).

    Attributes:
        name: label used in the tables and the report; unique among the run's generators and among its judges.
        backend: a chat backend of actors.registry: "local" (transformers on CPU, the embedded default), "vllm" (a
            vLLM engine in a Ray actor), "http" (an OpenAI-compatible server), or "python:module:Class"; for a judge
            also "calibrated": the cheap judge (engine.method.calibrated), no LLM call, its `model` the coefficients
            file ("default": the shipped ones, fitted on human labels), its features from the run's embedder.
        model: what the backend loads or asks for: a packaged name ("smollm2-135m"), a folder path, or the
            server's model id.
        temperature: generation temperature for this model, overriding `sampling.temperature` (the paper used 1.0
            for GPT-4o/Gemini and 0.5 for Claude/Llama/Mistral); a list sweeps it (see RunConfig).
        top_p: nucleus sampling mass for this model, overriding `sampling.top_p`.
        sweep: set by the run for the generators a sweep made: {"base": the configured name, "temperature": …,
            "top_p": …, "configured": the generator's own temperature and top_p as configured}; not written by
            hand.
        weights: set by the run for a model loaded from a local folder or file: a digest of its weights (actors.hub.
            folder_digest), in its shard keys, so that a checkpoint trained again into the same folder is not read
            from the old one's shards (a hub id is pinned to its commit in `model` instead); not written by hand.
        options: backend keyword arguments (e.g. base_url, api_key_env, tensor_parallel_size, max_model_len).
        verdict: how a judge's verdicts (and a grader's grades) are read. "auto" asks for the first token's
            log-probs (the first token decides, where the three written read as that answer); where the provider
            rejects the parameters (HTTP 400) or returns none, it reads the text instead for the rest of the run (a
            line in the log, and the report says which judges did). "logprobs" always asks for them; "text" never
            does (P(yes) is then 1 or 0). Claude's OpenAI-compatible endpoint returns no log-probs: "text" there
            saves the first round's tokens.
        num_actors / num_cpus / num_gpus / batch_size: the actor pool (PoolConfig).
    """

    name: str = "smollm2-135m"
    backend: str = "local"
    model: str = "smollm2-135m"
    temperature: float | list[float] | None = None
    top_p: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    verdict: Literal["auto", "logprobs", "text"] = "auto"
    sweep: dict[str, Any] = field(default_factory=dict)
    weights: str = ""

    def __post_init__(self) -> None:
        if self.backend == CALIBRATED:
            # The calibrated judge is no chat model: `model` names its coefficients ("default": the shipped ones).
            if self.model in ("", "smollm2-135m"):
                self.model = "default"
            # It reads no verdicts and loads no backend: settings for one would be silently ignored.
            ignored = [k for k, set_ in (("options", bool(self.options)), ("verdict", self.verdict != "auto"),
                                         ("temperature", self.temperature is not None),
                                         ("top_p", self.top_p is not None)) if set_]
            if ignored:
                raise InvalidValue(ignored[0], f"a calibrated judge ({self.name!r}) takes no {ignored[0]}: it is "
                                               "no chat model (its model is a coefficients file)")
        else:
            self._check_backend("chat", self.backend)
        if self.sweep and (set(self.sweep) - {"configured"} != {"base", "temperature", "top_p"}
                           or not isinstance(self.sweep.get("base"), str) or isinstance(self.temperature, list)
                           or not _configured_ok(self.sweep.get("configured", {}))):
            # Written by the run for each value of a sweep (and read back from its config.yaml), never by hand.
            raise InvalidValue("sweep", "is set by the run for each value of a sweep, not by hand: give "
                                        "temperature or top_p as a list instead")
        if self.sweep and (self.sweep["temperature"] != self.temperature or self.sweep["top_p"] != self.top_p):
            # A record the run wrote holds this generator's own values: one that does not was edited, and the report
            # would label groups sampled at one temperature with another (or sampling would read a list as a value).
            raise InvalidValue("sweep", f"records temperature {self.sweep['temperature']!r} and top_p "
                                        f"{self.sweep['top_p']!r}, but this generator samples at {self.temperature!r} "
                                        f"and {self.top_p!r}: remove the sweep record and give temperature or top_p "
                                        "as a list instead")
        super().__post_init__()
        for value in _values(self.temperature, "temperature"):
            try:
                SamplingParams(temperature=value)
            except ValueError as exc:
                raise _sampling_error(exc) from None
        if self.top_p is not None:
            try:
                SamplingParams(top_p=self.top_p)
            except ValueError as exc:
                raise _sampling_error(exc) from None

    def spec(self) -> dict[str, Any]:
        """Everything a worker needs to build the backend (plain values, picklable for Ray)."""
        return {"name": self.name, "backend": self.backend, "model": self.model, "options": dict(self.options),
                "verdict": self.verdict}

    def identity(self) -> dict[str, Any]:
        """What determines this model's outputs, hashed into shard keys.

        Where the model is served and how it is reached (URL, key variable, timeouts, retries, concurrency,
        threads, batch sizes, GPU placement: actors.registry.TRANSPORT_OPTIONS) do not change what it answers, so
        they are left out: a rerun against the same model at a new address, or on other hardware, resumes instead
        of starting over. `verdict` keys work that does not read it too (samples, classification votes, checklists,
        accuracy checks): keyed apart, a run of the shipped configs (judges with verdict text or logprobs) would
        pay for all of those again after an upgrade; a verdict changed later asks them again.
        """
        return {"name": self.name, "backend": self.backend, "model": self.model,
                "options": _identity_options(self.options), "verdict": self.verdict, **_weights(self.weights)}

    def classify_identity(self) -> dict[str, Any]:
        """What keys this model's classifications: its identity under the name it classifies as (a sweep's
        generators classify greedily, alike, once for all the sweep's values, under the configured name)."""
        return {**self.identity(), "name": (self.sweep or {}).get("base", self.name)}


@dataclass
class EmbedderConfig(PoolConfig):
    """The sentence-embedding model for embedding diversity (and the calibrated judge's cosine feature).

    Attributes:
        backend: an embed backend of actors.registry: "local" (sentence-transformers in the actor), "http" (an
            OpenAI-compatible /v1/embeddings endpoint), "vllm" (a vLLM embedding model), or "python:module:Class".
        model: a packaged name ("all-minilm-l6-v2"), a sentence-transformers folder, or the server's model id.
        options: backend keyword arguments (local: device; http: base_url, api_key_env…; vllm: dtype…).
        weights: set by the run, as for a ModelConfig.
        num_actors / num_cpus / num_gpus / batch_size: the actor pool (PoolConfig).
    """

    backend: str = "local"
    model: str = "all-minilm-l6-v2"
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    weights: str = ""

    def __post_init__(self) -> None:
        self._check_backend("embed", self.backend)
        super().__post_init__()

    def spec(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "options": dict(self.options)}

    def identity(self) -> dict[str, Any]:
        """What determines the embeddings (hashed into shard keys); where they are computed is left out."""
        return {"backend": self.backend, "model": self.model, "options": _identity_options(self.options),
                **_weights(self.weights)}


@dataclass
class PromptsConfig:
    """Where the prompts come from.

    Attributes:
        source: "builtin" (our prompt set in datasets/builtin), "jsonl" (a file of prompts in our format),
            "responses" (responses generated elsewhere, audited without generating: engine/inputs/responses.py), a
            public benchmark ("simpleqa", "math500", "macgyver", "noveltybench", "wildbench",
            "community_alignment": manifests in datasets/sources), or "paper" (the paper's 344-prompt mix drawn
            from the benchmarks).
        path: the file, for sources that read one. A benchmark without a path is read from the cache of fetched
            sources (`engine/run.py fetch`), fetched first when the run is online (models.offline); offline and
            not cached, the run stops before any stage with the command to run.
        paths: for "paper": benchmark name → file (relative to the working directory), overriding the cache.
        missing_sources: for "paper": "fail" (a benchmark neither given nor cached stops the run, with the fetch
            command) or "skip" (draw from the benchmarks there are; the report lists the shortfall).
        seed: for "paper": the seed of the draw (recorded in each prompt's meta).
        options: extra keyword arguments for the loader (e.g. noveltybench's category_map, community_alignment's
            text_field).
        per_category: keep at most this many prompts per gold category (in file order); None keeps all.
        limit: keep at most this many prompts overall, the first ones; for "paper", drawn across its sources in
            proportion to each one's share (with the seed). None keeps all.
        on_error: "fail" stops at the first bad row with its file, line and field; "skip" skips bad rows,
            counts and lists them in the report, and goes on.
        max_prompt_chars: a prompt longer than this is a bad row (0: no limit).
        max_response_chars: a response of a `responses` file longer than this is a bad row (0: no limit).
        format: for the `responses` source, the file's format: "auto" (from the file), "taskdiv" (ours), "lm-eval"
            (lm-evaluation-harness --log_samples), "inspect" (Inspect AI eval logs, .json or .eval) or
            "noveltybench" (generation files); engine/inputs/external_formats.py.
    """

    source: str = "builtin"
    path: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    missing_sources: Literal["fail", "skip"] = "fail"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    per_category: int | None = None
    limit: int | None = None
    on_error: Literal["fail", "skip"] = "fail"
    max_prompt_chars: int = 0
    max_response_chars: int = 0
    format: Literal["auto", "taskdiv", "lm-eval", "inspect", "noveltybench"] = "auto"

    def __post_init__(self) -> None:
        for key in ("max_prompt_chars", "max_response_chars"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise InvalidValue(key, f"must be an integer >= 0 (0: no limit), got {value!r}")
        # Keys of another source were taken and ignored: `paths: {simpleqa: …}` with source simpleqa read the cache.
        only = [("paths", "paper", bool(self.paths)), ("missing_sources", "paper", self.missing_sources != "fail"),
                ("seed", "paper", self.seed != 0), ("format", "responses", self.format != "auto"),
                ("max_response_chars", "responses", bool(self.max_response_chars))]
        for key, source, given in only:
            if given and self.source != source and _REFUSE_IGNORED.get():
                hint = " (give this source's file as prompts.path)" if key == "paths" else ""
                raise InvalidValue(key, f"is read by the {source!r} source only, and this one is {self.source!r}: "
                                        f"it would be ignored{hint}")
        for key in ("per_category", "limit"):  # a negative limit cut prompts off the end ([:-2]); 0 kept none
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidValue(key, f"must be an integer >= 1 (or null: no limit), got {value!r}")


@dataclass
class SamplingConfig:
    """Generation settings shared by every strategy (the paper's: temperature 1.0, top-p 0.9, 1024 tokens).

    Attributes:
        temperature: default temperature (a model's own `temperature` overrides it). A list sweeps it: each value
            is its own set of groups for every generator and strategy (see RunConfig).
        top_p: nucleus sampling mass; a list sweeps it too.
        max_tokens: most new tokens per response. System-prompt sampling asks for n responses in one
            completion, so it gets n × max_tokens.
        seed: base seed; each group's seed derives from it, the prompt and the strategy.
        system_parse: how a system-prompt completion is split into its n responses: "strict" (the asked-for
            "### Response k" headers — or headers naming solutions, approaches, stories…: "### Solution 1" — or
            "Response k:" inline) or "lenient" (also a bare numbered list "1. … 2. …" or "### 1. Title" — which also
            splits one answer written as numbered steps into several, inflating the count). It keys the
            system-prompt strategies' groups only: a change samples those again, and no other (a run stored with
            "lenient" by an earlier version samples its other groups once more, keyed as the default now).
    """

    temperature: float | list[float] = 1.0
    top_p: float | list[float] = 0.9
    max_tokens: int = 1024
    seed: int = 0
    system_parse: Literal["strict", "lenient"] = "strict"

    def __post_init__(self) -> None:
        for t in _values(self.temperature, "temperature"):
            for p in _values(self.top_p, "top_p"):
                try:
                    SamplingParams(temperature=t, top_p=p, max_tokens=self.max_tokens)
                except ValueError as exc:
                    raise _sampling_error(exc) from None


def _configured_ok(configured: Any) -> bool:
    """Whether a sweep record's `configured` (absent in records written before it was) is one the run wrote."""
    if not isinstance(configured, dict) or (configured and set(configured) != {"temperature", "top_p"}):
        return False
    number = (int, float)
    t, p = configured.get("temperature"), configured.get("top_p")
    return (t is None or (isinstance(t, number) and not isinstance(t, bool))
            or (isinstance(t, list) and all(isinstance(v, number) and not isinstance(v, bool) for v in t))) \
        and (p is None or (isinstance(p, number) and not isinstance(p, bool)))


def _values(value: float | list[float] | None, key: str) -> list[float]:
    """A setting that may be swept, as its list of values (empty for None); a list must be non-empty and distinct."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [value]
    if not value:
        raise InvalidValue(key, "a sweep needs at least one value")
    if len(set(value)) != len(value):
        raise InvalidValue(key, f"each value once, got {value}")
    return list(value)


@dataclass
class CascadeConfig:
    """The cascade: a calibrated judge (logistic regression over similarity features, engine/method/calibrated.py)
    decides the pairs it is confident about; the LLM judges decide the rest.

    Attributes:
        enabled: turn the cascade on.
        low / high: the calibrated judge decides "different" at p <= low and "equivalent" at p >= high. A wider
            band sends more pairs to the LLM (more cost, closer to all-LLM judging).
        audit_rate: fraction of cheap-decided pairs also sent to the LLM, only to measure agreement between the
            cascade and all-LLM judging (reported); their verdicts stay the cheap judge's.
        coefficients: a coefficients file from `engine/run.py calibrate` (default: the shipped one).
    """

    enabled: bool = False
    low: float = 0.1
    high: float = 0.9
    audit_rate: float = 0.1
    coefficients: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise InvalidValue("low", f"need 0 <= low <= high <= 1, got low={self.low}, high={self.high}")
        if not 0.0 <= self.audit_rate <= 1.0:
            raise InvalidValue("audit_rate", f"must be in [0, 1], got {self.audit_rate}")


@dataclass
class JudgeConfig:
    """Pairwise functional-equivalence judging.

    Attributes:
        threshold: a pair is "equivalent" (an edge in the graph) when p_equivalent >= threshold.
        all_pairs: judge every pair even when union-find already implies the answer. Off, the component count
            is exactly the same and far fewer calls are made; on, pairwise rates are available.
        both_orders: judge (i, j) and (j, i) and average, to cancel position bias; doubles the calls.
        max_tokens: tokens a judge may write where its verdict is read from text (`verdict: text`, or `auto` after
            a provider gave no log-probs); where log-probs decide, three are asked for (the text confirms them).
        max_response_chars: responses are cut to this many characters inside the judge prompt, so pairs of long
            responses still fit a small model's context. 0 disables the cut.
        cascade: let a calibrated cheap judge decide the pairs it is confident about (see CascadeConfig).
        agreement_sample_rate: the share of groups (a deterministic draw by group) that every judge judges in
            full — every pair, no pruning, no cascade — so that judge-judge agreement over pairs (Cohen's κ) is
            measured on a sample that does not depend on any judge's own verdicts. Their extra calls are counted in
            the report. 0: no pairwise κ (agreement is then reported on unique counts per group only). A rerun with
            another rate judges again only the groups it moves into or out of the sample.
        target: what the judges compare. "answer": the responses, under each category's criterion (the paper).
            "trace": the reasoning traces of generators that return them (a server's reasoning field, or a
            `<think>` block), asked whether the two follow the same problem-solving strategy; the answers are then
            not judged. "both": each, counted apart; the report shows them side by side per category. Traces are
            never part of an answer, whatever the target; groups without a trace for every response get no trace
            count (counted in the report).
    """

    threshold: float = 0.5
    all_pairs: bool = False
    both_orders: bool = False
    max_tokens: int = 4
    max_response_chars: int = 4000
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    agreement_sample_rate: float = 0.05
    target: Literal["answer", "trace", "both"] = "answer"

    def __post_init__(self) -> None:
        if not 0.0 <= self.agreement_sample_rate <= 1.0:
            raise InvalidValue("agreement_sample_rate", f"must be in [0, 1], got {self.agreement_sample_rate}")
        if not 0.0 <= self.threshold <= 1.0:
            raise InvalidValue("threshold", f"must be in [0, 1], got {self.threshold}")
        cascade = self.cascade
        if cascade.enabled and not cascade.low < self.threshold <= cascade.high:
            # A pair is confident outside [low, high] and its verdict read against the threshold: a threshold
            # outside the band turned confident "equivalent" pairs into "different" ones, or the reverse.
            raise InvalidValue("threshold", f"with the cascade on, need cascade.low < threshold <= cascade.high, got "
                                            f"low {cascade.low}, threshold {self.threshold}, high {cascade.high}")
        if self.max_tokens < 1:
            raise InvalidValue("max_tokens", f"must be >= 1, got {self.max_tokens}")
        if self.max_response_chars < 0:
            raise InvalidValue("max_response_chars", f"must be >= 0 (0: no cut), got {self.max_response_chars}")


@dataclass
class RewardConfig(PoolConfig):
    """A reward model scoring every response (the paper's reward-model quality, e.g. Athene-RM-8B).

    Attributes:
        backend: a reward backend of actors.registry: "local" (transformers, CPU or one GPU) or "vllm" (vLLM's
            pooling runner).
        model: the reward model: a folder or a Hugging Face id (e.g. Nexusflow/Athene-RM-8B,
            Skywork/Skywork-Reward-Llama-3.1-8B-v0.2).
        kind: its head (actors.reward): "sequence-classification" (one output at the last token), "athene" (a value
            head read at a scoring token appended after the conversation; options.score_token_id, default 128003),
            or "auto" (told apart by the checkpoint's weights). A head the checkpoint lacks is an error, never a
            random one.
        options: backend keyword arguments (local: device, batch_size, max_length, score_token_id; vllm: engine
            arguments).
        weights: set by the run, as for a ModelConfig.
        num_actors / num_cpus / num_gpus / batch_size: the actor pool (PoolConfig).
    """

    backend: str = "local"
    model: str = ""
    kind: Literal["auto", "sequence-classification", "athene"] = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    weights: str = ""

    def __post_init__(self) -> None:
        self._check_backend("reward", self.backend)
        if not self.model:
            raise InvalidValue("model", "the folder or id of a reward model is needed")
        super().__post_init__()

    def spec(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "options": {**self.options, "kind": self.kind}}

    def identity(self) -> dict[str, Any]:
        """What determines the rewards (hashed into shard keys)."""
        return {"backend": self.backend, "model": self.model, "kind": self.kind,
                "options": _identity_options(self.options), **_weights(self.weights)}


@dataclass
class QualityConfig:
    """Checklist quality: a grader writes 3–5 criteria per prompt, then grades each response 1–5.

    Attributes:
        enabled: run the quality stage.
        grader: name of the judge that grades (default: the first judge).
        graders: several judges that grade, like the paper's quality scores from its LLM judges: each writes its
            own checklist and grades every response; a response's quality is the mean over the graders that read
            it, and the report gives each grader's mean and their agreement. Give `grader` or `graders`, not both.
            The first grader also grades short answers for accuracy.
        checklist_max_tokens: tokens for writing the checklist.
        reward_model: optionally, a reward model scoring every response as well.
    """

    enabled: bool = True
    grader: str | None = None
    graders: list[str] = field(default_factory=list)
    checklist_max_tokens: int = 200
    reward_model: RewardConfig | None = None

    def __post_init__(self) -> None:
        # A negative budget lowered the plan's cost bound under the cap; 0 failed the checklist stage after
        # sampling and judging were paid for.
        if isinstance(self.checklist_max_tokens, bool) or not isinstance(self.checklist_max_tokens, int) \
                or self.checklist_max_tokens < 1:
            raise InvalidValue("checklist_max_tokens", f"must be a whole number of tokens >= 1, got "
                                                       f"{self.checklist_max_tokens!r}")


@dataclass
class AccuracyConfig:
    """Accuracy on prompts with a gold answer: math-verify for MATH-500 / category D, an LLM grader for SimpleQA /
    category A (the grader is quality.grader, default the first judge).

    Attributes:
        enabled: run the accuracy stage.
        math_timeout_s: wall-clock limit of one math-verify check (a pathological answer is "could not check").
    """

    enabled: bool = True
    math_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.math_timeout_s, (int, float)) and self.math_timeout_s > 0
                and math.isfinite(self.math_timeout_s)):  # inf overflowed in the checker, after the paid stages
            raise InvalidValue("math_timeout_s", f"must be a number of seconds > 0, got {self.math_timeout_s!r}")


@dataclass
class ModelsConfig:
    """How models are found.

    Attributes:
        offline: hub access for models given by Hugging Face id ("org/name"). "auto": offline only when the
            environment says so (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set); true: the local Hugging Face cache
            only; false: download into the cache on first use (HF_TOKEN from the environment for gated models).
            Every worker gets the same setting. Folders and packaged models never need the hub.
    """

    offline: Literal["auto"] | bool = "auto"

    def resolved_offline(self) -> bool:
        """Whether hub access is off for this run."""
        if self.offline == "auto":
            return registry.env_offline()
        return bool(self.offline)


@dataclass
class ExecutionConfig:
    """Where and how the stages run.

    Attributes:
        executor: "ray" (model hosts as Ray actors on a local or remote Ray cluster) or "local" (in this process;
            for debugging and small tests).
        ray_address: None joins the cluster in RAY_ADDRESS or under `ray submit`, else starts an embedded local
            Ray; "local" always starts an embedded one; anything else is passed to ray.init.
        num_cpus: logical CPUs of an embedded Ray (None: the machine's count, at least 4 so that the models'
            hosts, which reserve fractions of a CPU, can be scheduled together on a small machine).
        object_store_memory: bytes for an embedded Ray's object store (its default takes 30% of RAM).
        shard_size: prompts per shard, the unit that is written atomically and skipped on resume. Smaller
            shards lose less on a crash; larger ones make fewer files.
        max_cost_usd: refuse to start when the plan's upper bound of the cost (`engine/run.py plan`: every pair
            judged, every answer asked twice, every generation at max_tokens, priced with the models'
            options.prices) exceeds this; an API model without prices then counts as unknown and also refuses.
            During the run, once the cost the backends report reaches it, no further batch is sent: the unsent
            shards fail and batches in flight finish. The cap holds each invocation's spending: a rerun computes
            the unsent shards under the same cap (finished ones are read back), and its bound leaves out the groups
            the last finished run stored under the same settings (a strategy added later is counted alone).
        row_retries: how many reruns compute again a row whose backend call failed in a way that may not recur
            (retries exhausted on 5xx or throttling, a timed-out generation); after that the row's failure is kept
            and reported. Every finished row is kept and reused whatever happens to the rest of its shard.
        stream: stages from sampling on stream into each other — a shard is judged, graded and scored as soon
            as it is sampled, while later shards are still sampling (engine.execution.dataflow). False runs them
            one after another (each stage starts when the one before has finished); the tables are the same.
        node_wait_s: on a Ray cluster that was joined, how long the run waits, before its first model call, for
            nodes that can hold every model's actors (an autoscaler adds cluster.yaml's GPU workers minutes after
            `ray up`); then it refuses, naming each model no node can hold. An embedded Ray is not waited for.
            During the run, how long a model host whose node was lost may wait for a node to restart on (60 s at
            least); then its batches fail, as failed shards a rerun computes.
        probe_endpoints: before the first paid call, send each HTTP model one short request per sampling setting
            the run will ask of it (a few tokens each, from where the model's actors run): a key the provider
            refuses, a wrong model id, sampling settings the model refuses or a spent balance stop the run there,
            not when that model's stage begins.
    """

    executor: Literal["ray", "local"] = "ray"
    ray_address: str | None = None
    num_cpus: int | None = None
    object_store_memory: int = 512 * 1024 * 1024
    shard_size: int = 16
    max_cost_usd: float | None = None
    row_retries: int = 2
    stream: bool = True
    node_wait_s: float = 900.0
    probe_endpoints: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.node_wait_s, bool) or not isinstance(self.node_wait_s, (int, float)) \
                or self.node_wait_s < 0:
            raise InvalidValue("node_wait_s", f"must be a number of seconds >= 0, got {self.node_wait_s!r}")
        if not isinstance(self.stream, bool):
            raise InvalidValue("stream", f"must be true or false, got {self.stream!r}")
        if not isinstance(self.row_retries, int) or self.row_retries < 0:
            raise InvalidValue("row_retries", f"must be an integer >= 0, got {self.row_retries!r}")
        if self.max_cost_usd is not None and (isinstance(self.max_cost_usd, bool) or not math.isfinite(
                self.max_cost_usd) or self.max_cost_usd < 0):  # NaN compared false with every plan: no cap at all
            raise InvalidValue("max_cost_usd", f"must be a number >= 0 (or null: no cap), got {self.max_cost_usd}")
        if isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise InvalidValue("shard_size", f"must be an integer >= 1, got {self.shard_size!r}")
        if self.num_cpus is not None and (isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, int)
                                          or self.num_cpus < 1):
            raise InvalidValue("num_cpus", f"must be an integer >= 1 (or null: the machine's), got {self.num_cpus!r}")
        if isinstance(self.object_store_memory, bool) or not isinstance(self.object_store_memory, int) \
                or self.object_store_memory < 78_643_200:  # Ray's own floor (75 MiB)
            raise InvalidValue("object_store_memory", f"must be an integer of bytes >= 78643200 (Ray's minimum), "
                                                      f"got {self.object_store_memory!r}")


@dataclass
class ReportConfig:
    """Settings of the report's statistics.

    Attributes:
        bootstrap_resamples: resamples of every bootstrap interval (resampling prompts with replacement), at most
            MAX_BOOTSTRAP_RESAMPLES.
        seed: seed of the bootstrap's random generator (same run, same seed: same intervals).
        ci: coverage of the percentile intervals, e.g. 0.95.
    """

    bootstrap_resamples: int = 1000
    seed: int = 0
    ci: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.bootstrap_resamples <= MAX_BOOTSTRAP_RESAMPLES:
            # 10^11 passed, and stalled the report for days after the run was paid for.
            raise InvalidValue("bootstrap_resamples", f"must be between 1 and {MAX_BOOTSTRAP_RESAMPLES:,}, got "
                                                      f"{self.bootstrap_resamples}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            # NumPy's generator takes none below 0: a finished run lost its report to a traceback.
            raise InvalidValue("seed", f"must be an integer >= 0, got {self.seed!r}")
        if not 0.0 < self.ci < 1.0:
            raise InvalidValue("ci", f"must be strictly between 0 and 1, got {self.ci}")


# Far past what any percentile interval needs (10^4 resamples already put its bounds within a fraction of a
# percentile point of their limit); more only stalls the report after the run.
MAX_BOOTSTRAP_RESAMPLES = 1_000_000


@dataclass
class RunConfig:
    """One audit run.

    Attributes:
        run_dir: where tables, the resolved config and the report go. A rerun with the same run_dir resumes. A config
            file without one runs in runs/<the file's name> (my-run.yaml: runs/my-run) — it was the demo's
            runs/demo, where a copied snippet's audit replaced the demo's tables; a config built in code without one,
            in runs/default.
        prompts: the prompt source.
        generators: the models whose homogeneity is audited.
        judges: the models that judge pairwise equivalence; the report averages them (the paper used three).
        category_source: what anchored sampling is told: "model" (each generator self-classifies, the paper's
            task-anchored sampling) or "gold" (the prompts' gold categories). Judging always uses gold where
            present, else the reference classification (see `classifier`).
        n: responses per prompt per strategy.
        strategies: which sampling strategies run, from temperature, system_general, system_anchored,
            regen_general, regen_anchored.
        sampling: shared generation settings.
        judge: judging settings.
        embedder: the embedding model.
        quality: checklist-quality settings.
        accuracy: accuracy settings.
        classifier: the model that makes the reference classification of prompts without a gold category — the
            yardstick the judges apply, the same for every generator (a generator's own classification drives its
            anchored sampling only). Default: every judge classifies and the majority letter wins (ties: the first
            judge's).
        models: how models are found (hub access for Hugging Face ids).
        execution: executor settings.
        report: the report's statistics (bootstrap resamples, seed, interval coverage).
    """

    run_dir: str = "runs/default"
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generators: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    judges: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    category_source: Literal["model", "gold"] = "model"
    n: int = 5
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    classifier: ModelConfig | None = None
    models: ModelsConfig = field(default_factory=ModelsConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        if not self.run_dir.strip():
            # "" wrote the run's tables, config.yaml and shards/ into the current folder
            raise InvalidValue("run_dir", "must name a folder, got an empty string")
        if self.n < 2:
            raise InvalidValue("n", f"must be >= 2 (diversity needs at least two responses), got {self.n}")
        # A run's config.yaml holds a sweep's generators one per value: they become the generator as configured again,
        # and the sweep is made anew from it, so that a sampling list edited there (or by --set) sweeps its values.
        self.generators, written_at = _unswept(self.generators)
        for setting in ("temperature", "top_p"):
            # A generator's own value wins over sampling's: a list there with every generator setting its own (the
            # paper's and the real-audit presets give each generator its temperature) swept nothing, said nothing,
            # and config.yaml recorded the list as if it had.
            if isinstance(getattr(self.sampling, setting), list) and self.generators and _REFUSE_IGNORED.get() \
                    and all(getattr(g, setting) is not None and not g.sweep for g in self.generators):
                instead = "give the list as a generator's own temperature" if setting == "temperature" else \
                    "leave top_p out of the generators you sweep"
                raise InvalidValue(f"sampling.{setting}", f"a list sweeps the generators without a {setting} of their "
                                                          f"own, and every generator here sets one: it would be "
                                                          f"ignored ({instead})")
        self.generators, sources = _swept(self.generators, self.sampling)
        # Each generator's place in the config as written (a sweep's values share their generator's): messages name
        # that, not the place in the expanded list. Not a field: config.yaml holds the expanded generators.
        self.generator_keys = [f"generators[{written_at[k]}]" for k in sources]
        for role, models in (("judges", self.judges), ("classifier", [self.classifier] if self.classifier else [])):
            if any(isinstance(m.temperature, list) for m in models):
                raise InvalidValue(role, "a list of temperatures sweeps generators only")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad:
            raise InvalidValue("strategies", f"unknown {bad}; choose from {', '.join(STRATEGIES)}")
        if not self.strategies:
            raise InvalidValue("strategies", "at least one strategy is needed")
        if len(set(self.strategies)) != len(self.strategies) and _REFUSE_IGNORED.get():  # sampled and paid twice
            raise InvalidValue("strategies", f"each strategy once, got {self.strategies}")
        for role, models in (("judges", self.judges), ("classifier", [self.classifier] if self.classifier else [])):
            for k, m in enumerate(models):
                key = f"{role}[{k}]" if role == "judges" else role
                for setting in ("temperature", "top_p"):
                    if getattr(m, setting) is not None and m.backend != CALIBRATED and _REFUSE_IGNORED.get():
                        raise InvalidValue(f"{key}.{setting}", "judging, classifying and grading are greedy "
                                                               "(temperature 0): a setting here would be recorded "
                                                               "and never used; remove it")
        for role, models in (("generators", self.generators), ("judges", self.judges)):
            if not models:
                raise InvalidValue(role, "at least one model is needed")
            names = [m.name for m in models]
            if len(set(names)) != len(names):
                raise InvalidValue(role, f"model names must be unique, got {names}")
        # A swept generator's configured name is its rows' name in classification and the report: another generator
        # of that name would merge with it there, though the sweep renamed its own generators apart.
        clash = sorted({g.sweep["base"] for g in self.generators if g.sweep} & {g.name for g in self.generators})
        if clash:
            raise InvalidValue("generators", f"model names must be unique, got {clash[0]!r} twice (one of them "
                                             "swept: its generators are named <name>@t=…)")
        for role, models in (("generators", self.generators), ("classifier", [self.classifier] if self.classifier
                                                                  else [])):
            if any(m.backend == CALIBRATED for m in models):
                raise InvalidValue(role, "the calibrated judge only judges pairs: it cannot generate or classify")
        judge_names = [j.name for j in self.llm_judges]
        if not judge_names and (self.quality.enabled or self.accuracy.enabled):
            raise InvalidValue("judges", "quality and accuracy are graded by an LLM judge, and every judge here is "
                                         "calibrated: add an LLM judge, or turn quality and accuracy off")
        if not judge_names and self.judge.target != "answer":
            raise InvalidValue("judge.target", f"{self.judge.target!r} judges reasoning traces, which only an LLM "
                                               "judge can, and every judge here is calibrated: add an LLM judge, or "
                                               "set judge.target: answer")
        if self.quality.grader is not None and self.quality.graders:
            raise InvalidValue("quality.graders", "give quality.grader or quality.graders, not both")
        for name in ([self.quality.grader] if self.quality.grader else []) + self.quality.graders:
            if name not in judge_names:
                raise InvalidValue("quality.graders" if self.quality.graders else "quality.grader",
                                   f"{name!r} is not one of the LLM judges ({', '.join(judge_names)})")
        if len(set(self.quality.graders)) != len(self.quality.graders):
            raise InvalidValue("quality.graders", f"each grader once, got {self.quality.graders}")

    @property
    def llm_judges(self) -> list[ModelConfig]:
        """The judges that are language models (every judge but a calibrated one): they can classify, grade and
        judge reasoning traces."""
        return [j for j in self.judges if j.backend != CALIBRATED]

    @property
    def voters(self) -> list[ModelConfig]:
        """The reference classifiers of prompts without a gold category: the `classifier`, else the LLM judges."""
        return [self.classifier] if self.classifier is not None else self.llm_judges

    @property
    def graders(self) -> list[ModelConfig]:
        """The models that grade quality (quality.graders, else quality.grader, else the first LLM judge; none when
        every judge is calibrated, which the config allows only with quality and accuracy off)."""
        names = self.quality.graders or ([self.quality.grader] if self.quality.grader
                                         else [j.name for j in self.llm_judges[:1]])
        by_name = {j.name: j for j in self.judges}
        return [by_name[n] for n in names]

    @property
    def grader(self) -> ModelConfig:
        """The first grader (it also grades short answers for accuracy)."""
        return self.graders[0]

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """The config as plain data; `redact`: base URLs without user info or query values (every written copy)."""
        data = dataclasses.asdict(self)
        return redacted(data) if redact else data


def _unswept(generators: list[ModelConfig]) -> tuple[list[ModelConfig], list[int]]:
    """The generators as configured: those a sweep made (read back from a run's config.yaml, their record holding
    what was configured) become the one generator they came from, at the place of the first. Returns the generators
    and, for each, the index of the first entry it came from.

    A sweep's generators had been kept as they were: a sampling list edited in config.yaml (or set by --set on it)
    was ignored — the run sampled the old values and config.yaml recorded the new list beside them. A record written
    before `configured` was is kept as it is (its generator's own values cannot be told from sampling's)."""
    out: list[ModelConfig] = []
    at: list[int] = []
    made: dict[str, int] = {}
    for k, g in enumerate(generators):
        if not g.sweep or "configured" not in g.sweep:
            out.append(g)
            at.append(k)
            continue
        configured = g.sweep["configured"]
        base = dataclasses.replace(g, name=g.sweep["base"], temperature=configured["temperature"],
                                   top_p=configured["top_p"], sweep={})
        if base.name not in made:
            made[base.name] = len(out)
            out.append(base)
            at.append(k)
        elif out[made[base.name]] != base:
            # The values of one sweep are one generator: an entry edited apart (its options, its model) would be
            # lost to the first's, or sampled under the same name as the others.
            raise InvalidValue(f"generators[{k}]", f"{g.name!r} is a value of the sweep of {base.name!r} and differs "
                                                   f"from its first value in more than its temperature and top_p: "
                                                   "give every value of a sweep the same settings (or give the "
                                                   "generator apart under a name of its own, without its sweep "
                                                   "record)")
    return out, at


def _swept(generators: list[ModelConfig], sampling: SamplingConfig) -> tuple[list[ModelConfig], list[int]]:
    """Sweeps, made explicit: a generator whose temperature (its own, else sampling.temperature) or top_p
    (sampling.top_p) is a list becomes one generator per value (per pair of values), named
    "<name>@t=<temperature>" (",p=<top_p>" when top_p is swept), with that value and a `sweep` record. They share
    the model's host (the host key leaves out the name and the sampling), so a sweep loads the model once; each value
    keys its own shards, so a rerun resumes it and a value added later computes only its groups. A generator the
    sweep already made and `_unswept` left (a record older than `configured`) is kept as it is; single values are not
    renamed — so a single value made a list later is a new generator (`<name>@t=…`), its groups computed again under
    that name.
    Returns the generators and, for each, the index of the generator it came from."""
    out, sources = [], []
    for k, g in enumerate(generators):
        if g.sweep:
            out.append(g)
            sources.append(k)
            continue
        temperatures = _values(g.temperature, "temperature") if g.temperature is not None else \
            _values(sampling.temperature, "sampling.temperature")
        top_ps = [g.top_p] if g.top_p is not None else _values(sampling.top_p, "sampling.top_p")
        t_swept, p_swept = isinstance(g.temperature if g.temperature is not None else sampling.temperature, list), \
            g.top_p is None and isinstance(sampling.top_p, list)
        if not t_swept and not p_swept:
            out.append(g)
            sources.append(k)
            continue
        if p_swept and all(t == 0 for t in temperatures):
            # Greedy decoding reads no top_p: every value would sample the same groups, each paid for.
            raise InvalidValue("sampling.top_p", f"a list of top_p values at temperature 0 (greedy decoding, which "
                                                 f"reads no top_p) would sample the same groups once per value "
                                                 f"(generator {g.name!r}: give it a top_p of its own, or sweep "
                                                 "temperature too)")
        names = set()
        for t in temperatures:
            for p in top_ps:
                if p_swept and t == 0 and p != top_ps[0]:
                    # Greedy: the same groups at every top_p, so temperature 0 is sampled once, at the first top_p
                    # (the report's line for each other top_p starts at the next temperature).
                    continue
                name = g.name + "@" + ",".join(([f"t={t:g}"] if t_swept else []) + ([f"p={p:g}"] if p_swept else []))
                if name in names:  # values that differ past 6 significant digits: the names would clash
                    key = "top_p" if p_swept and not t_swept else "temperature"
                    raise InvalidValue(f"sampling.{key}" if key == "top_p" or g.temperature is None
                                       else f"generators[{k}].temperature",
                                       f"two values print alike as {name.split('@', 1)[1]!r} (a sweep's values are "
                                       "named to 6 significant digits): give values further apart")
                names.add(name)
                configured = {"temperature": g.temperature, "top_p": g.top_p}
                out.append(dataclasses.replace(g, name=name, temperature=t, top_p=p,
                                               sweep={"base": g.name, "temperature": t, "top_p": p,
                                                      "configured": configured}))
                sources.append(k)
    return out, sources


# -------------------------------------------------------------------------------------------------------------
# Loading: a small typed reader so that errors name the key path and the expected type.


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases: a 476-byte "billion laughs" of anchors and aliases expands to a million
    leaves once a config is copied into plain dicts; no taskdiv file needs an alias."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not accepted in taskdiv files",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        # A key given twice kept its last value unsaid: a second `judges:` block dropped the first.
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: {…}` merges, it is no key of its own
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    first_mark, first_text = seen[key]
                    same = "" if first_text == key_node.value else f" (as {first_text!r}: YAML reads both as {key!r})"
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key_node.value!r} is given twice in one mapping (first at line "
                                    f"{first_mark.line + 1}{same}); the later would silently replace the earlier",
                        key_node.start_mark)
                if isinstance(key, (str, int, float, bool)):
                    seen[key] = (key_node.start_mark, key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML as yaml.safe_load does, refusing aliases (a yaml.YAMLError naming the line)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 — a SafeLoader subclass


class _NoAliasDumper(yaml.SafeDumper):
    """yaml.SafeDumper that writes a value shared by two keys twice instead of as an anchor and alias (which
    load_yaml refuses)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """YAML for `data` that load_yaml reads back: no aliases, keys in their order."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


def redact_url(url: Any) -> Any:
    """A URL without user info and with its query values masked, for every copy of a config (config.yaml,
    compare.md, logs): either may carry a credential. Non-strings are returned as they are."""
    if not isinstance(url, str):
        return url
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL, redacted>"
    if ":" in host:
        host = f"[{host}]"
    netloc = (("<redacted>@" if parts.username or parts.password else "") + host
              + (f":{port}" if port else ""))
    query = urlencode([(k, "<redacted>") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redacted(value: Any) -> Any:
    """A config's data with its secrets hidden: base URLs without credentials, and the value of any key named as a
    secret (preflight refuses such options; a config written before it did, or by hand, may hold one)."""
    if isinstance(value, dict):
        return {k: redact_url(v) if k == "base_url" else "<redacted>" if isinstance(k, str) and v is not None
                and registry.SECRET_OPTION.search(k) else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config.

    Args:
        path: the YAML file.
        overrides: dotted keys to set after reading, e.g. {"n": 3, "sampling.max_tokens": 32}.

    Raises:
        ConfigError: naming the file and the key for unknown keys, wrong types and invalid values.
    """
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, expected a YAML config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ConfigError(f"{path}: {where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if not data:  # more likely a file not written yet than a wish for every default: said, not refused
        log.warning("%s: the config is empty: every setting is its default (the builtin prompts, the packaged "
                    "SmolLM2 generator and judge)", path)
    if "run_dir" not in data:
        data = {"run_dir": f"runs/{path.stem}", **data}  # each config file its own run directory (RunConfig.run_dir)
    return config_from_dict(data, overrides=overrides, source=str(path))


def config_from_dict(
    data: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "<config>"
) -> RunConfig:
    """A RunConfig from plain data (a parsed YAML file) with dotted overrides applied first.

    Args:
        data: the config's keys.
        overrides: {"sampling.max_tokens": 64, "judges.1.backend": "http"}: dots walk mappings, and a number walks
            into a list (0-based). A list the file does not give is the default's (e.g. the one default judge).
        source: where `data` came from, for messages.

    Raises:
        ConfigError: naming the source and the key (a bad override names the override).
    """
    data = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        _json_integers(data, "")
        return _build(RunConfig, data, "")
    except ConfigError as exc:
        # The key the error names ("judges[1].verdict: …"), as an override would spell it ("judges.1.verdict"): a
        # value that came from --set is that override's mistake, not the file's (whose own value was fine).
        named = re.sub(r"\[(\d+)\]", r".\1", str(exc).split(": ", 1)[0])
        culprit = next((o for o in (overrides or {}) if named == o or named.startswith(o + ".")), None)
        if culprit is not None:
            raise ConfigError(f"override {culprit!r} (--set): {exc}") from None
        # A check across keys of one section ("judge.threshold" against the cascade's low and high) may fail on what
        # overrides set beside a key the file never gave: they are named with the file.
        related = [o for o in (overrides or {}) if o.split(".")[0] == named.split(".")[0]]
        if related:
            raise ConfigError(f"{source} with --set {', '.join(related)}: {exc}") from None
        raise ConfigError(f"{source}: {exc}") from None


def _json_integers(value: Any, where: str) -> None:
    """Refuse an integer wider than 64 bits anywhere in the config: shard keys hash the settings as JSON, which
    (orjson) holds none wider, and the run stopped with a TypeError traceback after its first stage had run."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 64:
        raise ConfigError(f"{where}: {value} is wider than 64 bits; give a smaller integer")
    if isinstance(value, dict):
        for key, item in value.items():
            _json_integers(item, _join(where, key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _json_integers(item, f"{where}[{k}]")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in `data` (see config_from_dict); missing parents come from the defaults."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"override {dotted!r}: empty key segment")
    node: Any = data
    default: Any = RunConfig().to_dict()
    for k, part in enumerate(parts):
        where = ".".join(parts[:k]) or "the config"
        last = k == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(f"override {dotted!r}: {where} is a list; expected an index, got {part!r}")
            index = int(part)
            if index >= len(node):
                raise ConfigError(f"override {dotted!r}: {where} has {len(node)} item(s), so index {index} is out "
                                  f"of range (add the item to the config file)")
            if last:
                node[index] = value
                return
            node, default = node[index], (default[index] if isinstance(default, list) and index < len(default)
                                          else None)
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            sub_default = default.get(part) if isinstance(default, dict) else None
            if part not in node and sub_default is not None and not isinstance(sub_default, (dict, list)):
                raise ConfigError(f"override {dotted!r}: {'.'.join(parts[:k + 1])} is a "
                                  f"{type(sub_default).__name__}, not a mapping or a list")
            if part not in node or node[part] is None:
                node[part] = copy.deepcopy(sub_default) if isinstance(sub_default, (dict, list)) else {}
            node, default = node[part], sub_default
        else:
            raise ConfigError(f"override {dotted!r}: {where} is a {type(node).__name__}, not a mapping or a list")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """One config section from plain data, checked like a whole config (e.g. JudgeConfig from a stage's kwargs).

    Raises:
        ConfigError: naming `where` and the key.
    """
    return _build(cls, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    _string_keys(data, where)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])}: unknown key (known keys here: {', '.join(sorted(known))})"
        )
    kwargs = {k: _coerce(hints[k], v, _join(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except InvalidValue as exc:
        raise ConfigError(f"{_join(where, exc.key)}: {exc.message}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from None


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _string_keys(data: dict, where: str) -> None:
    """Refuse a key that is not a string (a traceback sorting it among the others): YAML 1.1 reads an unquoted
    on/off/yes/no as true/false and 0.9 as a number."""
    for bad in data:
        if not isinstance(bad, str):
            hint = " (YAML reads an unquoted on/off/yes/no as true/false: quote the key)" if isinstance(bad, bool) \
                else ""
            raise ConfigError(f"{where + ': ' if where else ''}the key {bad!r} is not a name{hint}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, get_args(tp)))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(tp)
        return [_coerce(item, v, f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        if get_args(tp) and get_args(tp)[0] is str:  # option names (a value may map token ids: logit_bias)
            _string_keys(value, where)
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _describe(tp: Any) -> str:
    """A union's members as a user writes them: a Literal's values quoted ("'auto'"), not "Literal"."""
    words = []
    for a in get_args(tp):
        if a is type(None):
            words.append("null")
        elif get_origin(a) is Literal:
            words += [repr(v) for v in get_args(a)]
        else:
            words.append({"bool": "true or false"}.get(getattr(a, "__name__", ""), getattr(a, "__name__", str(a))))
    return " or ".join(words)
