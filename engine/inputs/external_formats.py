"""Outputs made by other tools, read as our responses rows (engine.inputs.responses): audit them without regenerating.

Each reader yields `(where, line, row)`: `where` the file (or `file.eval:member` inside an Inspect archive), `line`
the 1-based line or None, and `row` one of our group rows — {"prompt", "responses", "model", "strategy", "source",
"prompt_id", "gold_answer"} — or an InputError naming the field that did not fit.

- lm-evaluation-harness `--log_samples` (`samples_<task>_<date>.jsonl`, one document per line): the prompt is the
  request's first argument (`arguments.gen_args_0.arg_0`, or `arguments[0][0]` in releases before 0.4.3) — for
  chat API models, a one-element list holding the messages as JSON, whose user messages are the prompt — the
  responses are `resps[0]` (one per repeat), the target is kept as the gold answer. The same document appears once
  per filter: the first line of each document is read and the others are skipped. The model is the folder the
  harness wrote the file into (`<output_path>/<model>/samples_…`), the strategy `lm-eval:<task>`.
- Inspect AI eval logs, JSON (`.json`) and zipped (`.eval`: `header.json` and `samples/<id>_epoch_<k>.json`):
  one response per sample, epoch and choice, so the epochs (and `num_choices` choices) of a sample are its group;
  the prompt is the sample's input (a string, or the text of its user messages), the response each choice's text
  (the output's completion where there is one choice), its reasoning parts the trace; members compressed with zstd
  (Inspect's default since 0.3.206) are read too. The model is `eval.model`, the strategy `inspect:<task>`.
- NoveltyBench generation files (JSONL: `id`, `prompt`, `model`, `generations`), one group per line.

Readers never execute anything from the files: JSON only, and an Inspect archive's members are read with a size cap.
"""

from __future__ import annotations

import ast
import io
import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator

from engine.errors import InputError
from engine.inputs.prompts import UTF8_BOM

FORMATS = ("taskdiv", "lm-eval", "inspect", "noveltybench")
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one sample of an Inspect archive, uncompressed
# All the samples of an archive, uncompressed, and how many times their compressed size they may inflate to (past
# 16 MiB): every sample's responses are held in memory; 6 samples of 64 MiB deflated into 368 KB held 377 million
# characters. Inspect's own logs compress JSON a few times over.
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_ARCHIVE_RATIO = 100

Row = tuple[str, "int | None", "dict[str, Any] | InputError"]


def detect_format(path: Path) -> str:
    """The format of a responses file from its name and first record."""
    if path.suffix == ".eval":
        return "inspect"
    if path.suffix == ".json":
        try:
            with path.open("rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
        except OSError as exc:
            raise InputError(str(path), None, None, f"cannot read the file ({exc.strerror or exc})") from exc
        first = _first_json_line(path)
        if isinstance(first, dict):  # a whole object on the first line: our rows (JSONL), or a log on one line
            return "inspect" if "samples" in first and ("eval" in first or "version" in first) else "taskdiv"
        # Inspect writes its logs indented: the first line opens the object, and its keys follow.
        if '"eval"' in head or '"samples"' in head or '"version"' in head:
            return "inspect"
        return "taskdiv"
    if path.suffix == ".jsonl":
        first = _first_json_line(path)
        if isinstance(first, dict):
            if "resps" in first and "doc_id" in first:
                return "lm-eval"
            if "generations" in first and "prompt" in first:
                return "noveltybench"
    return "taskdiv"


def _first_json_line(path: Path) -> Any:
    """The first non-blank line's JSON value, for detection only: decoded leniently, so that a bad byte in it does
    not hide the format (the reader then reports that line with its number); None when it is not JSON."""
    try:
        with path.open("rb") as f:
            for k, raw in enumerate(f):
                if k == 0:
                    raw = raw.removeprefix(UTF8_BOM)
                if raw.strip():
                    return _loads(raw.decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return None


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | InputError]]:
    """Each non-empty line's JSON object, or the InputError saying why the line is not one.

    Reads bytes and decodes line by line (as engine.inputs.prompts.iter_jsonl does), so an invalid byte is that
    line's error — skipped under on_error: skip — not a decoding error of the whole file. The json module parses,
    not orjson: harness files may hold NaN in their metrics, which only json reads.
    """
    where = str(path)
    try:
        data = path.read_bytes().removeprefix(UTF8_BOM)
    except OSError as exc:
        raise InputError(where, None, None, f"cannot read the file ({exc.strerror or exc})") from exc
    for k, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield k, InputError(where, k, None, f"invalid UTF-8 at byte {exc.start} of the line")
            continue
        try:
            rec = _loads(line)
        except ValueError as exc:
            yield k, InputError(where, k, None, f"not valid JSON ({exc})")
            continue
        yield k, rec if isinstance(rec, dict) else InputError(where, k, None, "expected a JSON object per line")


# -- lm-evaluation-harness ---------------------------------------------------------------------------------------

_LM_EVAL_NAME = re.compile(r"^samples_(?P<task>.+?)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-\.:]+)$")
# How lm-eval names a model's output folder (utils.sanitize_model_name): "org/name" → "org__name".
_LM_EVAL_SANITIZED = re.compile(r"[\"<>:/|\\?*\[\]]+")


def _lm_eval_model(path: Path, stamp: str | None) -> str:
    """The model of an lm-eval samples file: the folder lm-eval names after it (`<output_path>/<org__name>/`); but
    where its results file of the same run (results_<stamp>.json beside it) names a model that folder is not named
    after — an --output_path given as a .json file writes both into that file's folder, "exp" — that model."""
    folder = path.parent.name or "external"
    results = path.parent / f"results_{stamp}.json" if stamp else None
    try:
        if results is None or not results.is_file() or results.stat().st_size > 16 * 1024**2:
            return folder
        name = _loads(results.read_text(encoding="utf-8")).get("model_name")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return folder
    if isinstance(name, str) and name.strip() and _LM_EVAL_SANITIZED.sub("__", name) != folder:
        return name
    return folder


def read_lm_eval(path: Path) -> Iterator[Row]:
    where = str(path)
    m = _LM_EVAL_NAME.match(path.stem)
    task = m.group("task") if m else path.stem.removeprefix("samples_")
    model = _lm_eval_model(path, m.group("stamp") if m else None)
    seen: set[Any] = set()
    for line, rec in _jsonl(path):
        if isinstance(rec, InputError):
            yield where, line, rec
            continue
        doc_id = rec.get("doc_id")
        if doc_id is not None and (isinstance(doc_id, bool) or not isinstance(doc_id, (int, str))):
            yield where, line, InputError(where, line, "doc_id", f"expected an integer or a string, got "
                                                               f"{type(doc_id).__name__}")
            continue
        if doc_id is not None:  # without one, a record is a document of its own (never dropped as a repeat)
            if doc_id in seen:
                continue  # the same document under another filter
            seen.add(doc_id)
        try:
            prompt = _lm_eval_prompt(rec.get("arguments"))
        except ValueError as exc:
            yield where, line, InputError(where, line, "arguments", str(exc))
            continue
        if prompt is None:
            yield where, line, InputError(where, line, "arguments", "no generation request: expected one request "
                                                                   "of a prompt and its generation settings "
                                                                   "(arguments.gen_args_0.arg_0 and arg_1, or "
                                                                   "arguments[0][0] and [0][1]) — a generate_until "
                                                                   "task; loglikelihood and multiple-choice tasks "
                                                                   "score given continuations, they generate nothing")
            continue
        resps = rec.get("resps")
        if not (isinstance(resps, list) and resps and isinstance(resps[0], list)
                and all(isinstance(t, str) for t in resps[0])):
            yield where, line, InputError(where, line, "resps", "expected a list holding the list of generations "
                                                               "(a generate_until task)")
            continue
        target = rec.get("target")
        yield where, line, {
            "prompt": prompt, "responses": list(resps[0]), "model": model, "strategy": f"lm-eval:{task}",
            "source": task, "prompt_id": f"{task}:{doc_id}" if doc_id is not None else None,
            "gold_answer": gold_answer(target, written=True),
        }


def gold_answer(target: Any, written: bool = False) -> str | None:
    """A sample's gold answer: a string as it is; of a list of accepted answers (aliases: TriviaQA's, NQ's; an
    Inspect target list), the first. `written`: lm-eval writes its target with str(), so a list arrives as its Python
    text ("['8', 'eight']"), read back here as a literal (ast.literal_eval evaluates no code; the text is bounded).
    Before, such a list was graded as the answer "['8', 'eight']" (a right "8" was wrong), and an Inspect list was
    dropped without a word (the prompt's accuracy went unchecked)."""
    if written and isinstance(target, str) and target.startswith("[") and target.endswith("]") and len(target) < 20_000:
        try:
            literal = ast.literal_eval(target)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            literal = None  # a target that only looks like a list: kept as written
        if isinstance(literal, list) and literal and all(isinstance(t, str) for t in literal):
            target = literal  # else (numbers, an empty list) the text is the answer, as written
    if isinstance(target, list):
        target = next((t for t in target if isinstance(t, str) and t.strip()), None)
    return target if isinstance(target, str) and target else None


def _lm_eval_prompt(arguments: Any) -> str | None:
    """The prompt of a generate_until request: one request, (prompt, generation settings). A loglikelihood or
    multiple-choice document has one request per choice, each (context, continuation string), and its `resps` are
    the scores written as text ("(-1.5, False)"): not generations, so no prompt.

    Raises:
        ValueError: a chat request (see `_lm_eval_text`) whose messages hold no prompt.
    """
    if isinstance(arguments, dict):
        first = arguments.get("gen_args_0")
        if len(arguments) == 1 and isinstance(first, dict) and _is_lm_eval_prompt(first.get("arg_0")) \
                and isinstance(first.get("arg_1"), dict):
            return _lm_eval_text(first["arg_0"], "gen_args_0.arg_0")
    if isinstance(arguments, list) and len(arguments) == 1 and isinstance(arguments[0], list) \
            and len(arguments[0]) >= 2 and _is_lm_eval_prompt(arguments[0][0]) and isinstance(arguments[0][1], dict):
        return _lm_eval_text(arguments[0][0], "[0][0]")
    return None


def _is_lm_eval_prompt(arg: Any) -> bool:
    """A request's prompt: a string, or a chat request's JsonChatStr — lm-eval's NamedTuple of one JSON string of
    the messages (chat API models with --apply_chat_template), which its log writes as a one-element list."""
    return isinstance(arg, str) or (isinstance(arg, list) and len(arg) == 1 and isinstance(arg[0], str))


def _lm_eval_text(arg: str | list[str], name: str) -> str:
    """The prompt's text: the string itself, or the text of a chat request's user messages, read as an Inspect
    sample's messages are (`_user_text`).

    Raises:
        ValueError: the chat request's string is not a JSON list of messages, or they hold no user text.
    """
    if isinstance(arg, str):
        return arg
    try:
        messages = _loads(arg[0])
    except ValueError as exc:
        raise ValueError(f"{name}: a one-element list (a chat request) whose string is not JSON ({exc})") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{name}: a one-element list (a chat request) whose string is not a JSON list of "
                         'chat messages ({"role": …, "content": …})')
    prompt = _user_text(messages)
    if not prompt:
        raise ValueError(f"{name}: a chat request with no user message text")
    return prompt


# -- Inspect AI ----------------------------------------------------------------------------------------------------

def read_inspect(path: Path) -> Iterator[Row]:
    where = str(path)
    if path.suffix == ".eval":
        yield from _read_inspect_archive(path)
        return
    try:
        log = _loads(path.read_text(encoding="utf-8-sig"))  # -sig: a leading byte-order mark is dropped
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        yield where, None, InputError(where, None, None, f"not an Inspect eval log ({exc})")
        return
    if isinstance(log, dict) and "configs" in log and "results" in log and not isinstance(log.get("samples"), list):
        # lm-eval's results_<date>.json (its "samples" key is null): taken for an Inspect log without samples.
        yield where, None, InputError(where, None, None, "an lm-eval results file, which holds scores, not "
                                                         "generations: give the samples_<task>_<date>.jsonl beside it "
                                                         "(written with --log_samples)")
        return
    if not isinstance(log, dict) or not isinstance(log.get("samples"), list):
        yield where, None, InputError(where, None, "samples", "an Inspect eval log with samples (a log written "
                                                            "with samples, not a header-only one)")
        return
    header = log.get("eval") if isinstance(log.get("eval"), dict) else {}
    stride = _num_choices(log)
    for k, sample in enumerate(log["samples"], start=1):
        yield from _inspect_rows(f"{where}:samples[{k - 1}]", None, sample, header, stride)


def _read_inspect_archive(path: Path) -> Iterator[Row]:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        yield where, None, InputError(where, None, None, f"not an Inspect .eval archive ({exc})")
        return
    with archive:
        names = archive.namelist()
        header: dict[str, Any] = {}
        stride = None
        if "header.json" in names:
            loaded = _member(archive, "header.json", where)
            if isinstance(loaded, InputError):
                yield where, None, loaded
                return
            eval_header = loaded.get("eval") if isinstance(loaded, dict) else None
            header = eval_header if isinstance(eval_header, dict) else {}
            stride = _num_choices(loaded)
        samples = sorted(n for n in names if n.startswith("samples/") and n.endswith(".json"))
        if not samples:
            yield where, None, InputError(where, None, "samples", "the archive holds no samples/*.json")
            return
        # The directory's sizes bound what is read: a member is never inflated past its stated size (_member).
        inflated = sum(archive.getinfo(n).file_size for n in samples)
        packed = sum(archive.getinfo(n).compress_size for n in samples)
        if inflated > MAX_ARCHIVE_BYTES or (inflated > 16 * 1024**2 and inflated > MAX_ARCHIVE_RATIO * max(packed, 1)):
            yield where, None, InputError(where, None, None, f"its samples inflate to {inflated} bytes from {packed}: "
                                                             f"over the {MAX_ARCHIVE_BYTES} bytes, or "
                                                             f"{MAX_ARCHIVE_RATIO} times their size, an archive's "
                                                             "samples may take")
            return
        for name in samples:
            sample = _member(archive, name, where)
            if isinstance(sample, InputError):
                yield f"{where}:{name}", None, sample
                continue
            yield from _inspect_rows(f"{where}:{name}", None, sample, header, stride)


# Inspect writes its archives' members with zstd since 0.3.206 (method 93 of the zip format), which Python's
# zipfile reads only from 3.14: such a member is read raw and decompressed with `zstandard`.
ZIP_ZSTANDARD = 93
# A zip member's local header (APPNOTE 4.3.7): signature, versions, flags, method, time, date, CRC, sizes, and the
# lengths of the name and extra field that come before the data.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


# The compressions Inspect writes (stored, deflate, zstd). Others (bzip2, LZMA) are refused: Python's zipfile
# decompresses those in one call without an output limit, so a member of a few bytes could fill memory.
_MEMBER_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, ZIP_ZSTANDARD)
_CHUNK = 64 * 1024


def _member(archive: zipfile.ZipFile, name: str, where: str) -> Any:
    info = archive.getinfo(name)
    here = f"{where}:{name}"
    if info.file_size > MAX_MEMBER_BYTES:
        return InputError(here, None, None, f"{info.file_size} bytes uncompressed, over the {MAX_MEMBER_BYTES} "
                                            "bytes a sample may have")
    if info.compress_type not in _MEMBER_METHODS:
        return InputError(here, None, None, f"compressed with zip method {info.compress_type}, which Inspect does "
                                            "not write (stored, deflate or zstd); `inspect log convert --to json` "
                                            "writes the log as JSON")
    try:
        data = _zstd_member(archive, info) if info.compress_type == ZIP_ZSTANDARD else _bounded_read(archive, info)
        return _loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        return InputError(here, None, None, f"not valid JSON ({exc})")


def _bounded_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A stored or deflated member, read in chunks: zipfile stops at the size the directory states (capped above),
    but one read() of the whole member inflates up to a gigabyte of a deflate stream per call before cutting it to
    that size — a member of a few kilobytes stating 100 bytes would take that much memory. Chunked, each call
    inflates at most a chunk; a stream longer than stated then fails its CRC, as that member's error."""
    out = bytearray()
    with archive.open(info) as f:
        while chunk := f.read(_CHUNK):
            out += chunk
    return bytes(out)


def _loads(text: str) -> Any:
    """json.loads with what it lets through refused as invalid: nesting too deep for Python's parser (a
    RecursionError otherwise escapes every reader's error handling) and strings holding a lone surrogate ("\\ud800"),
    which Arrow refuses later, far from the file and line."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone UTF-16 surrogate (not text)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _zstd_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A zstd-compressed member's bytes, checked against its size and CRC as zipfile checks the others. Writers put
    one frame per member (Inspect's, through zipfile-zstd or Python 3.14's zipfile); several are read too. At most
    the uncompressed size given in the directory (already capped) plus one byte is decompressed, so a member lying
    about its size cannot flood memory."""
    import zlib

    import zstandard

    fp = archive.fp
    if fp is None:
        raise zipfile.BadZipFile("the archive is closed")
    fp.seek(info.header_offset)
    local = fp.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size or local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    *_, name_length, extra_length = _LOCAL_HEADER.unpack(local)
    fp.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    raw = fp.read(info.compress_size)
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as reader:
            data = reader.read(info.file_size + 1)
    except zstandard.ZstdError as exc:
        raise zipfile.BadZipFile(f"bad zstd data in {info.filename} ({exc})") from None
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"{info.filename}: its size or CRC does not match the archive's directory")
    return data


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [c.get("text") for c in content if isinstance(c, dict) and c.get("type", "text") == "text"]
        parts = [p for p in parts if isinstance(p, str)]
        return "\n".join(parts) if parts else None
    return None


def _user_text(messages: list[Any]) -> str | None:
    """The prompt of a list of chat messages: the text of its last user message. The turns before it are the
    harness's framing — a system prompt, few-shot demonstrations as user and assistant turns — not the question:
    joined, the user turns made a prompt nobody sent (every demonstration's question, without its answer, before
    the real one), which the classifier and the judges then read."""
    users = [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    users = [u for u in users if u]
    return users[-1] if users else None


def _reasoning(content: Any) -> str | None:
    """The reasoning parts of a list of content parts (Inspect's ContentReasoning: `reasoning`, unless redacted)."""
    if not isinstance(content, list):
        return None
    parts = [c.get("reasoning") for c in content if isinstance(c, dict) and c.get("type") == "reasoning"
             and not c.get("redacted") and isinstance(c.get("reasoning"), str) and c.get("reasoning")]
    return "\n\n".join(parts) if parts else None


def _num_choices(log: Any) -> int | None:
    """The choices a log asked of each generation (its plan's GenerateConfig `num_choices`, else the eval's
    model_generate_config's), where it says (a header that is no object says nothing)."""
    if not isinstance(log, dict):
        return None
    for config in ((log.get("plan") or {}).get("config") if isinstance(log.get("plan"), dict) else None,
                   (log.get("eval") or {}).get("model_generate_config") if isinstance(log.get("eval"), dict)
                   else None):
        n = config.get("num_choices") if isinstance(config, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            return n
    return None


def _inspect_rows(where: str, line: int | None, sample: Any, header: dict[str, Any],
                  stride: int | None = None) -> Iterator[Row]:
    """One row per choice of a sample's output: a sample generated with `num_choices` n holds n responses (and one
    row per epoch, as ever), numbered epoch by epoch, n to an epoch (`stride`, the log's num_choices; else the
    sample's own count): an epoch that came back with fewer choices leaves a gap, which the loader renumbers and
    says, where numbering by its own count gave its first choice the index of the epoch before's last."""
    if not isinstance(sample, dict):
        yield where, line, InputError(where, line, None, "expected a sample object")
        return
    raw_input = sample.get("input")
    if isinstance(raw_input, list):
        prompt = _user_text(raw_input)
    else:
        prompt = _text(raw_input)
    if not prompt:
        yield where, line, InputError(where, line, "input", "no prompt text (a string, or user messages)")
        return
    output = sample.get("output") if isinstance(sample.get("output"), dict) else {}
    choices = output.get("choices") if isinstance(output.get("choices"), list) else []
    messages = [c.get("message") if isinstance(c, dict) and isinstance(c.get("message"), dict) else {}
                for c in choices]
    answers = [(_text(m.get("content")), _reasoning(m.get("content"))) for m in messages]
    # Reasoning and no text (cut off while thinking): no answer — an empty response beside its trace, not a
    # sample refused (its pairs are then not judged: engine.method.judges.NO_ANSWER).
    answers = [("" if text is None and trace else text, trace) for text, trace in answers]
    completion = output.get("completion") if isinstance(output.get("completion"), str) else None
    if len(answers) < 2 and completion:  # one choice: the completion Inspect made of it
        answers = [(completion, answers[0][1] if answers else None)]
    if not answers or any(text is None for text, _ in answers):
        error = sample.get("error")
        said = error.get("message") if isinstance(error, dict) else None
        yield where, line, InputError(where, line, "output", "no response (output.completion or the text of "
                                                             "every choice's message)"
                                      + (f"; the sample failed in Inspect: {str(said)[:300]}" if said else ""))
        return
    task = header.get("task") or "inspect"
    target = sample.get("target")
    sample_id = sample.get("id")
    epoch = sample.get("epoch")
    for k, (text, trace) in enumerate(answers):
        yield where, line, {
            "prompt": prompt, "response": text, **({"trace": trace} if trace else {}),
            "model": header.get("model") or output.get("model") or "external", "strategy": f"inspect:{task}",
            "source": str(task), "prompt_id": f"{task}:{sample_id}" if sample_id is not None else None,
            "sample_idx": ((epoch - 1) * max(stride or 0, len(answers)) + k
                           if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1 else None),
            "gold_answer": gold_answer(target),
        }


# -- NoveltyBench ------------------------------------------------------------------------------------------------

def read_noveltybench(path: Path) -> Iterator[Row]:
    where = str(path)
    for line, rec in _jsonl(path):
        if isinstance(rec, InputError):
            yield where, line, rec
            continue
        generations = rec.get("generations")
        if not isinstance(generations, list) or not all(isinstance(g, str) for g in generations):
            yield where, line, InputError(where, line, "generations", "expected a list of strings")
            continue
        yield where, line, {
            "prompt": rec.get("prompt"), "responses": generations, "model": rec.get("model") or "external",
            "strategy": "noveltybench", "source": "noveltybench",
            "prompt_id": f"noveltybench:{rec['id']}" if rec.get("id") is not None else None,
        }


READERS = {"lm-eval": read_lm_eval, "inspect": read_inspect, "noveltybench": read_noveltybench}
