"""Models by Hugging Face id: where a hub id resolves to, online or offline, in the local Hugging Face cache.

A model string is a local folder, a packaged name (see actors.local / actors.embed), or a hub id ("org/name",
optionally "org/name@revision"). Offline (HF_HUB_OFFLINE, or a run's `models.offline`), a hub id resolves only
from the cache; online it is downloaded into the cache on first use (`HF_TOKEN` from the environment for gated
models — read here, never written anywhere). The cache is `HF_HUB_CACHE`, else `HF_HOME`/hub, else
~/.cache/huggingface/hub, read at call time (huggingface_hub reads its own settings once, at import).

Imports: huggingface_hub, only inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import orjson

from actors.base import BackendError, api_key_problem

_TRUE = {"1", "true", "yes", "on"}


def env_offline() -> bool:
    """Whether the environment asks for no hub access (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set truthy)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cache_dir() -> Path:
    """The Hugging Face hub cache this process uses."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface" / "hub"


def looks_like_hub_id(model: str) -> bool:
    """"org/name" or "org/name@revision", and not a path (no leading ., / or ~, no more slashes)."""
    repo = model.split("@", 1)[0]
    parts = repo.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~")) and "\\" not in model


def split_revision(model: str) -> tuple[str, str | None]:
    repo, _, revision = model.partition("@")
    return repo, revision or None


def hf_token() -> str | None:
    """HF_TOKEN from the environment without surrounding whitespace, or None where unset or blank.

    Passed to huggingface_hub explicitly, the token skips the library's own cleaning: one ending in \\r (a .env file
    saved with CRLF line ends) was refused by the HTTP library in a message quoting the header, token and all.

    Raises:
        BackendError: the token holds a character that cannot go in an HTTP header (the message never shows it).
    """
    value = os.environ.get("HF_TOKEN")
    if value is None or not value.strip():
        return None
    why = api_key_problem("HF_TOKEN", value)
    if why is not None:
        raise BackendError(why)
    return value.strip()


def scrub_token(text: str, token: str | None) -> str:
    """`text` without the token (an exception's message may quote a request's headers)."""
    return text.replace(token, "<redacted>") if token else text


def cached_snapshot(model: str) -> Path | None:
    """The cached snapshot folder of a hub id (with its config.json), or None when the cache has none. The folder
    may lack files a download was stopped before (missing_weights).

    A plain "org/name" whose cache records no `main` (refs/main) but holds one snapshot is that snapshot: a run
    pins every hub id to its commit, and a worker's download of "org/name@<commit>" writes no refs/main — an
    offline rerun of the same config found "no entry in the Hugging Face cache" beside the weights it had loaded.
    Where it holds several, which one is `main` cannot be told: none."""
    from huggingface_hub import try_to_load_from_cache

    repo, revision = split_revision(model)
    found = try_to_load_from_cache(repo, "config.json", cache_dir=str(cache_dir()), revision=revision)
    if isinstance(found, str):
        return Path(found).parent
    entry = cache_dir() / f"models--{repo.replace('/', '--')}"
    if revision is not None or (entry / "refs" / "main").exists() or not (entry / "snapshots").is_dir():
        return None
    snapshots = [s for s in (entry / "snapshots").iterdir() if (s / "config.json").is_file()]
    return snapshots[0] if len(snapshots) == 1 else None


def download_hint(model: str) -> str:
    """The command that puts a hub id's snapshot into the cache (its revision too: a pinned id's commit)."""
    repo, revision = split_revision(model)
    return f"huggingface-cli download {repo}" + (f" --revision {revision}" if revision else "")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def missing_weights(folder: Path) -> list[str]:
    """The weight files a snapshot folder lacks: those its index lists (sharded weights) that are not there, or
    "weights" where it holds none at all. A cache that AutoConfig or AutoTokenizer filled, or a download stopped
    part-way, holds config.json without (all) its weights: read as the model, it passed the pre-run check and
    failed when the model loaded on a worker, and it was never downloaded again."""
    missing: list[str] = []
    indexes = sorted(folder.glob("*.index.json"))
    for index in indexes:
        try:
            shards = set((orjson.loads(index.read_bytes()).get("weight_map") or {}).values())
        except (OSError, ValueError, AttributeError):
            return [index.name]  # an index that does not read: its download was stopped too
        missing += sorted(s for s in shards if isinstance(s, str) and not (folder / s).exists())
    if not indexes and not any(f.name.endswith(WEIGHT_SUFFIXES) and f.exists() for f in folder.iterdir()):
        missing.append("weights (no *.safetensors or *.bin)")
    return missing


def cached_weights(model: str) -> tuple[Path | None, list[str]]:
    """A hub id's cached snapshot folder (None: none) and the weight files it lacks (missing_weights)."""
    found = cached_snapshot(model)
    return found, (missing_weights(found) if found is not None else [])


def lacking(missing: list[str]) -> str:
    """What a partial snapshot lacks (missing_weights), for messages: resolve's and preflight's."""
    return (f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} (a download stopped part-way, or only its "
            "config was fetched)")


def resolve(model: str, *, offline: bool | None = None) -> Path:
    """A local folder for a hub id: the cached snapshot, downloaded first when online and missing.

    Args:
        model: "org/name" or "org/name@revision".
        offline: None reads the environment (env_offline()).

    Raises:
        BackendError: not in the cache while offline, or the download failed (the message says which and what to
            do; it never carries the token).
    """
    offline = env_offline() if offline is None else offline
    found, missing = cached_weights(model)
    if found is not None and not missing:
        return found
    if offline:
        where = f"is in the Hugging Face cache at {found} without {lacking(missing)}" if found is not None else \
            f"is not in the Hugging Face cache at {cache_dir()}"
        raise BackendError(f"model {model!r} {where} and hub access is off (offline): download it first "
                           f"({download_hint(model)}) into a cache every node reads, or "
                           "turn hub access on (models.offline: false)")
    from huggingface_hub import HfApi, snapshot_download

    repo, revision = split_revision(model)
    token = hf_token()
    try:
        # A partial snapshot is completed: snapshot_download fetches only the files the cache lacks.
        files = HfApi().list_repo_files(repo, revision=revision, token=token)
        return Path(snapshot_download(repo, revision=revision, cache_dir=str(cache_dir()), token=token,
                                      allow_patterns=download_patterns(files), ignore_patterns=skipped_files(files)))
    except Exception as exc:  # network, gated, not found: one message, no token
        raise BackendError(f"model {model!r}: downloading from the Hugging Face hub failed "
                           f"({type(exc).__name__}: {scrub_token(str(exc), token)[:300]})") from None


# What a model needs from its repository: configs, tokenizer files, chat templates and code (run only with the
# opt-in), and one format of weights. Not the whole repository: Llama-3.1-8B-Instruct also holds its original
# checkpoint (original/consolidated.00.pth, 16 GB; 140 GB for the 70B), which vLLM's own download skips too.
MODEL_FILES = ("*.json", "*.model", "tokenizer.model*", "*.txt", "*.tiktoken", "*.jinja", "*.py")


def download_patterns(files: list[str]) -> list[str]:
    """The files of a repository to download: MODEL_FILES, and its safetensors weights, or its PyTorch .bin weights
    where it has no safetensors."""
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
    return [*weights, *MODEL_FILES]


def skipped_files(files: list[str]) -> list[str]:
    """Weights a repository holds twice: Mistral's repositories keep their own consolidated.safetensors beside the
    sharded Hugging Face files that the index lists (14 GB more for Mistral-7B); vLLM reads the indexed ones."""
    return ["consolidated*.safetensors"] if any(f.endswith(".safetensors.index.json") for f in files) else []


COMMIT = re.compile(r"[0-9a-f]{40}")


def resolved_commit(model: str, *, offline: bool) -> str | None:
    """The commit a hub id's weights load from now: that of its complete cached snapshot (which resolve() uses as it
    is, online too), else, online, the hub's for the id's revision (what resolve() downloads). A revision that is a
    commit already is itself. None where neither answers (offline and not cached, the hub unreachable).

    A run pins every hub id it loads to this commit (engine.execution.preflight.pin_weights): "org/name" is a
    branch, which moves when the model's authors push, and nodes with caches of their own may hold different
    snapshots of it — a resumed run would read shards of one snapshot beside new ones of another.
    """
    repo, revision = split_revision(model)
    if revision is not None and COMMIT.fullmatch(revision):
        return revision
    found, missing = cached_weights(model)
    if found is not None and not missing and COMMIT.fullmatch(found.name):
        return found.name  # a snapshot folder is named by its commit
    if offline:
        return None
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(repo, revision=revision, token=hf_token()).sha
    except Exception:  # noqa: BLE001 - preflight reached it a moment ago; the caller says the id stays unpinned
        return None
    return sha if isinstance(sha, str) and COMMIT.fullmatch(sha) else None


# Files this size or smaller are read whole by folder_digest; of larger ones (weights), the first and last MiB and
# SAMPLED_BLOCKS blocks spread evenly between (a fine-tune of a few layers moves tensors in the middle of the file
# only: safetensors files keep the embeddings first and the last norms last). 4 MiB a large file in all.
WHOLE_FILE_BYTES = 2 << 20
EDGE_BYTES = 1 << 20
SAMPLED_BLOCKS = 32
BLOCK_BYTES = 64 << 10

# What a model's loaders read from its folder (weights, configs, tokenizer, chat template, code): only these are
# digested. A README, or a trainer's state beside the weights (its optimizer, scheduler and random states), changes
# nothing the model answers.
DIGESTED = (*WEIGHT_SUFFIXES, ".gguf", ".json", ".model", ".txt", ".tiktoken", ".jinja", ".py")
TRAINER_FILES = re.compile(r"(trainer_state\.json|training_args\.bin|optimizer\.(pt|bin)|scheduler\.pt|scaler\.pt"
                           r"|rng_state.*\.pth)$")


def folder_digest(path: Path) -> str:
    """A digest of the weights a local model folder (or file) holds, cheap to take: each top-level file's name and
    size, the bytes of the small ones (configs, tokenizer, chat template) and, of the large ones (weights), the first
    and last MiB and blocks sampled between. A checkpoint trained again into the same folder changes it; a copy of
    the folder on another node's disk does not (nor its times), nor a file loaders do not read (DIGESTED,
    TRAINER_FILES). Loaders read the top level only (checkpoint-N/ subfolders are other models)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        f for f in path.iterdir() if f.is_file() and f.name.endswith(DIGESTED) and not TRAINER_FILES.fullmatch(f.name))
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as handle:
            if size <= WHOLE_FILE_BYTES:
                h.update(handle.read())
                continue
            h.update(handle.read(EDGE_BYTES))
            span = size - 2 * EDGE_BYTES - BLOCK_BYTES
            for k in range(SAMPLED_BLOCKS):
                handle.seek(EDGE_BYTES + span * k // max(1, SAMPLED_BLOCKS - 1) if span > 0 else EDGE_BYTES)
                h.update(handle.read(BLOCK_BYTES))
            handle.seek(size - EDGE_BYTES)
            h.update(handle.read(EDGE_BYTES))
    return h.hexdigest()[:16]


def check_reachable(model: str) -> None:
    """Online, without downloading: the hub knows the id and this token may read it.

    Raises:
        BackendError: the id is unknown, gated for this token, or the hub cannot be reached.
    """
    from huggingface_hub import HfApi

    repo, revision = split_revision(model)
    token = hf_token()
    try:
        api = HfApi()
        info = api.model_info(repo, revision=revision, token=token)
        if getattr(info, "gated", False):
            # A gated model's card and file list are public: model_info answers without the licence accepted or a
            # token, and the download on the worker is refused. auth-check asks whether this token may read it.
            api.auth_check(repo, token=token)
    except Exception as exc:
        hint = (" (a gated model: accept its licence on the hub and set HF_TOKEN)"
                if "gated" in type(exc).__name__.lower() or "401" in str(exc) or "403" in str(exc) else "")
        raise BackendError(f"model {model!r} cannot be reached on the Hugging Face hub: {type(exc).__name__}{hint}") \
            from None
