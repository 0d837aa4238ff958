"""Fetching the public sources, for real over loopback: a file server the test runs (with Range support and a
dropped connection), a Hugging Face-style folder layout for `--from`, and manifests the test writes — fetch,
resume, checksum mismatch, offline and not cached, import; then the real manifests against ../shared/datasets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine.cli import main
from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.inputs import fetch
from engine.inputs.sources import load_prompts
from tests.support.files import FileServer, manifests_folder

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "datasets"
MATH_ROWS = [{"problem": f"What is {k} + {k}?", "answer": str(2 * k), "subject": "Algebra", "level": 1 + k % 5,
              "unique_id": f"test/algebra/{k}.json"} for k in range(40)]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A served math500-shaped file, its manifest pointing at the server, and an empty cache."""
    files = tmp_path / "served"
    files.mkdir()
    data = "".join(json.dumps(r) + "\n" for r in MATH_ROWS).encode()
    (files / "test.jsonl").write_bytes(data)
    manifests = manifests_folder(tmp_path, monkeypatch)

    def manifest(url: str, sha256: str | None = None, name: str = "math500") -> None:
        (manifests / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "title": "test math", "license": "MIT", "homepage": "https://example.org",
            "loader": "math500", "main": "test.jsonl",
            "files": [{"name": "test.jsonl", "url": f"{url}/test.jsonl",
                       "sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": len(data)}]}))

    return files, data, manifest


def test_fetch_downloads_verifies_and_caches(served):
    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url)
        cached = fetch.fetch("math500", progress=False)
        assert cached["test.jsonl"].read_bytes() == data
        again = fetch.fetch("math500", progress=False)  # cached and verified: nothing is asked for
        assert again == cached and len(server.requests) == 1
    record = json.loads((fetch.source_dir("math500") / fetch.FETCHED).read_text())
    assert record["files"]["test.jsonl"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_interrupted_transfer_resumes_where_it_stopped(served):
    files, data, manifest = served
    with FileServer(files, cut_after={"test.jsonl": 1000}) as server:
        manifest(server.url)
        with pytest.raises(fetch.FetchError, match="rerun `fetch` to resume from 1000 bytes"):
            fetch.fetch("math500", progress=False)
        cached = fetch.fetch("math500", progress=False)
        assert server.requests == [("test.jsonl", None), ("test.jsonl", "bytes=1000-")]
    assert cached["test.jsonl"].read_bytes() == data
    assert not list(fetch.source_dir("math500").glob("*.part"))


def test_a_server_sending_more_than_the_pinned_size_is_stopped_there(served):
    # The size was checked once the download had ended: 20 MB sent for a file pinned at 100 bytes were written to
    # the cache first. Said by its length before the body, or cut where the body passes the size.
    files, data, manifest = served
    (files / "test.jsonl").write_bytes(data * 200)
    with FileServer(files) as server:
        manifest(server.url)
        with pytest.raises(fetch.FetchError, match=rf"sends {len(data) * 200} bytes, the manifest pins {len(data)}"):
            fetch.fetch("math500", progress=False)
    assert not any(fetch.source_dir("math500").iterdir())
    target = fetch.source_dir("math500") / "big"
    with FileServer(files) as server:  # no length said: counted as it arrives
        import httpx

        real = httpx.stream

        def without_length(*args, **kwargs):
            context = real(*args, **kwargs)
            response = context.__enter__()
            del response.headers["content-length"]
            return _Entered(context, response)

        import unittest.mock as mock

        with mock.patch("httpx.stream", without_length):
            with pytest.raises(fetch.FetchError, match=rf"more than the {len(data)} bytes the manifest pins"):
                fetch._download(f"{server.url}/test.jsonl", target, None, len(data))
    assert not list(target.parent.glob("big*"))


class _Entered:
    def __init__(self, context, response):
        self.context, self.response = context, response

    def __enter__(self):
        return self.response

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def test_a_checksum_mismatch_deletes_the_file_and_names_both_hashes(served):
    files, data, manifest = served
    wrong = "0" * 64
    with FileServer(files) as server:
        manifest(server.url, sha256=wrong)
        with pytest.raises(fetch.FetchError) as info:
            fetch.fetch("math500", progress=False)
    message = str(info.value)
    assert "math500" in message and wrong in message and hashlib.sha256(data).hexdigest() in message
    assert not any(fetch.source_dir("math500").iterdir())


def test_offline_and_not_cached_stops_before_any_stage_with_the_command(served, tmp_path):
    _, _, manifest = served
    manifest("http://127.0.0.1:9")
    with pytest.raises(fetch.FetchError, match=r"run `python engine/run\.py fetch math500`"):
        fetch.ensure("math500", offline=True)
    from engine.execution.pipeline import Pipeline

    cfg = config_from_dict({"run_dir": str(tmp_path / "run"), "prompts": {"source": "math500"},
                            "models": {"offline": True},
                            "generators": [{"backend": "python:tests.support.doubles:ScriptedChat", "model": "x"}],
                            "judges": [{"backend": "python:tests.support.doubles:ScriptedChat", "model": "x"}],
                            "execution": {"executor": "local"}})
    with pytest.raises(fetch.FetchError, match="fetch math500"):
        Pipeline(cfg, progress=False).run()
    assert not (tmp_path / "run" / "shards").exists()


def test_import_from_a_folder_then_the_config_names_the_source_only(served, tmp_path, capsys):
    files, data, manifest = served
    manifest("http://127.0.0.1:9")  # never reached: the files come from a folder
    have = tmp_path / "have" / "math500"
    have.mkdir(parents=True)
    (have / "test.jsonl").write_bytes(data)
    assert main(["fetch", "math500", "--from", str(tmp_path / "have")]) == 0
    assert "verified (sha256 + size)" in capsys.readouterr().out
    prompts = load_prompts(config_from_dict({"prompts": {"source": "math500"}}).prompts, offline=True)
    assert len(prompts) == 40 and prompts[0].gold_answer == "0" and prompts[0].gold_category == "D"
    (have / "test.jsonl").write_bytes(data[:-10] + b"0000000000")  # a corrupted copy is refused
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):
        fetch.import_from("math500", tmp_path / "have")


def wildbench_manifest(tmp_path, monkeypatch) -> list[dict]:
    """An unpinned Hugging Face manifest for wildbench in a manifests folder of its own, the cache in tmp_path;
    returns the sample rows (tests/test_data/wildbench_sample.jsonl)."""
    manifests = manifests_folder(tmp_path, monkeypatch)
    (manifests / "wildbench.yaml").write_text(yaml.safe_dump({
        "name": "wildbench", "title": "WildBench", "license": "see card", "homepage": "https://example.org",
        "loader": "wildbench", "main": "v2/*.parquet", "hf_dataset": "allenai/WildBench", "revision": None,
        "files": [{"pattern": "v2/*.parquet"}]}))
    sample = REPO / "tests" / "test_data" / "wildbench_sample.jsonl"
    return [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]


def test_an_unpinned_hugging_face_source_imports_from_its_layout_and_records_the_hashes(tmp_path, monkeypatch):
    rows = wildbench_manifest(tmp_path, monkeypatch)
    layout = tmp_path / "hf" / "wildbench" / "v2"
    layout.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), layout / "test-00000-of-00001.parquet")
    src = fetch.source("wildbench")
    assert not src.pinned
    fetch.import_from("wildbench", tmp_path / "hf")
    record = json.loads((fetch.source_dir("wildbench") / fetch.FETCHED).read_text())
    assert list(record["files"]) == ["v2/test-00000-of-00001.parquet"]
    prompts = load_prompts(config_from_dict({"prompts": {"source": "wildbench"}}).prompts, offline=True)
    assert len(prompts) == len(rows)


def test_import_tries_every_file_of_the_name_until_one_verifies(served, tmp_path):
    # test.jsonl, train.jsonl: names many datasets share. Before, only the first found was tried, and its failure
    # ("the file was deleted") read as if the user's own file had been deleted.
    _, data, manifest = served
    manifest("http://127.0.0.1:9")
    have = tmp_path / "have"
    (have / "another_dataset").mkdir(parents=True)
    (have / "zz_math").mkdir()
    wrong = have / "another_dataset" / "test.jsonl"
    wrong.write_bytes(b'{"text": "not math"}\n')
    right = have / "zz_math" / "test.jsonl"
    right.write_bytes(data)
    files = fetch.import_from("math500", have)
    assert files["test.jsonl"].read_bytes() == data
    record = json.loads((fetch.source_dir("math500") / fetch.FETCHED).read_text())
    assert record["files"]["test.jsonl"]["imported"] == str(right)

    # None verifies: each rejected file is named, the cache keeps its good copy, the user's files stay.
    right.write_bytes(data[:-1] + b"X")
    with pytest.raises(fetch.FetchError) as info:
        fetch.import_from("math500", have)
    message = str(info.value)
    assert "none of the 2 files named test.jsonl" in message and str(wrong) in message and str(right) in message
    assert "the file was deleted" not in message and f"({right} itself is untouched)" in message
    assert wrong.is_file() and right.is_file()
    assert fetch.cached_files(fetch.source("math500"))["test.jsonl"].read_bytes() == data
    assert not [p.name for p in fetch.source_dir("math500").iterdir() if p.name.endswith(".import")]


def test_fetching_every_source_tries_each_and_reports_every_failure(served, capsys):
    # Before, the first failing source (alphabetically "aaa" here) stopped the command: math500 was never fetched.
    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url, sha256="0" * 64, name="aaa")
        manifest(server.url)
        (fetch.SOURCES_DIR / "bbb.yaml").write_text(yaml.safe_dump({
            "name": "bbb", "title": "gone", "license": "MIT", "homepage": "https://example.org", "main": "x.csv",
            "files": [{"name": "x.csv", "url": f"{server.url}/x.csv"}]}))
        assert main(["fetch"]) == 2
    out, err = capsys.readouterr()
    assert f"math500: 1 file in {fetch.source_dir('math500')} — verified (sha256 + size); test.jsonl: 40 rows" in out
    assert fetch.cached_files(fetch.source("math500")) is not None
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # not the progress bars
    assert len(lines) == 2
    assert lines[0].startswith("error: aaa: test.jsonl: sha256 mismatch") and "the downloaded copy was" in lines[0]
    assert lines[1] == f"error: bbb: GET {server.url}/x.csv: HTTP 404"


def test_importing_every_source_fails_on_a_bad_copy_but_not_on_a_source_the_folder_lacks(served, tmp_path, capsys):
    # Before, importing everything returned 0 whatever failed (`return 0 if not failed or args.names else 0`).
    _, data, manifest = served
    manifest("http://127.0.0.1:9")
    manifest("http://127.0.0.1:9", name="other")  # its file is the same test.jsonl
    (fetch.SOURCES_DIR / "absent.yaml").write_text(yaml.safe_dump({
        "name": "absent", "title": "t", "license": "MIT", "homepage": "https://example.org", "main": "none.csv",
        "files": [{"name": "none.csv", "url": "http://127.0.0.1:9/none.csv"}]}))
    have = tmp_path / "have"
    (have / "math500").mkdir(parents=True)
    (have / "math500" / "test.jsonl").write_bytes(data)
    assert main(["fetch", "--from", str(have)]) == 0  # the folder has no none.csv: reported, not a failure
    assert "not imported: absent: none.csv not found" in capsys.readouterr().out
    (have / "math500" / "test.jsonl").write_bytes(data[:-1] + b"X")
    assert main(["fetch", "--from", str(have)]) == 2
    err = capsys.readouterr().err
    assert "error: math500: test.jsonl: " in err and "error: other: test.jsonl: " in err and "absent" not in err
    assert main(["fetch", "absent", "--from", str(have)]) == 2  # named, a source the folder lacks is a failure


def test_a_cached_file_changed_in_place_is_refused_not_read(served, tmp_path):
    # The size is compared on every use; the sha256 once per process (a new process here: the memo emptied).
    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url)
        fetch.fetch("math500", progress=False)
    cached = fetch.ensure("math500", offline=True)
    cached.write_bytes(data[:-2] + b"9\n")  # same size, one digit changed
    fetch._HASHED.clear()
    with pytest.raises(fetch.FetchError, match=rf"the cached test\.jsonl changed since it was fetched .*delete "
                                               rf"{cached}"):
        fetch.ensure("math500", offline=True)


def test_a_cache_recorded_for_another_pin_is_fetched_again(served):
    # The cache's own record was the only proof: a cached file that matched its record but not the manifest's pin
    # (a manifest updated since, a cache copied from elsewhere) was served, and `fetch` kept it.
    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url)
        fetch.fetch("math500", progress=False)
        new = data + (json.dumps(MATH_ROWS[0]) + "\n").encode()
        (files / "test.jsonl").write_bytes(new)
        (fetch.SOURCES_DIR / "math500.yaml").write_text(yaml.safe_dump({
            "name": "math500", "title": "test math", "license": "MIT", "homepage": "https://example.org",
            "loader": "math500", "main": "test.jsonl",
            "files": [{"name": "test.jsonl", "url": f"{server.url}/test.jsonl",
                       "sha256": hashlib.sha256(new).hexdigest(), "size": len(new)}]}))
        assert fetch.cached_files(fetch.source("math500")) is None
        with pytest.raises(fetch.FetchError, match="fetch math500"):
            fetch.ensure("math500", offline=True)
        assert fetch.fetch("math500", progress=False)["test.jsonl"].read_bytes() == new
        assert len(server.requests) == 2


def test_fetch_from_a_folder_that_holds_nothing_fails_and_leaves_no_trace(served, tmp_path, capsys):
    # A typo in --from imported nothing, said "not imported" for every source, exit 0, and left empty cache folders.
    _, _, manifest = served
    manifest("http://127.0.0.1:9")
    assert main(["fetch", "--from", str(tmp_path / "typo")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fetch", "--from", str(tmp_path / "empty")]) == 2
    assert "none of the sources' files is in this folder" in capsys.readouterr().err
    assert not fetch.source_dir("math500").exists()


def test_a_main_glob_matching_several_shards_is_refused_not_read_in_part(tmp_path):
    # WildBench's `main` is a glob ("v2/*.parquet"): were the hub to split v2 in shards, the loader read the first.
    src = fetch.source("wildbench")
    one = {"v2/test-00000-of-00001.parquet": tmp_path / "a.parquet"}
    assert fetch.main_file(src, one) == tmp_path / "a.parquet"
    two = {"v2/test-00000-of-00002.parquet": tmp_path / "a", "v2/test-00001-of-00002.parquet": tmp_path / "b"}
    with pytest.raises(fetch.FetchError, match="2 cached files match 'v2/\\*.parquet'.*prompts.path"):
        fetch.main_file(src, two)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A Hugging Face dataset served by patched hub functions: `main` is the revision the hub calls current, and
    `content[revision]` the rows a snapshot at that revision holds; every download's revision is recorded."""
    import huggingface_hub

    rows = wildbench_manifest(tmp_path, monkeypatch)
    hub = {"main": "rev1", "content": {"rev1": rows, "rev2": rows[:1]}, "downloads": []}

    class Api:
        def dataset_info(self, repo_id, revision=None, token=None):
            files = ["README.md", "v2/test-00000-of-00001.parquet"]
            return type("Info", (), {"sha": revision or hub["main"],
                                     "siblings": [type("Sibling", (), {"rfilename": f})() for f in files]})()

    def snapshot_download(repo_id, *, repo_type, revision, allow_patterns, local_dir, token):
        hub["downloads"].append(revision)
        target = Path(local_dir) / "v2" / "test-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(hub["content"][revision]), target)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return hub, rows


def test_a_missing_hugging_face_file_comes_back_from_the_recorded_revision(fake_hub):
    hub, rows = fake_hub
    first = fetch.ensure("wildbench", offline=False)
    before = first.read_bytes()
    hub["main"] = "rev2"  # the dataset moved on upstream
    first.unlink()
    again = fetch.ensure("wildbench", offline=False)
    assert hub["downloads"] == ["rev1", "rev1"] and again.read_bytes() == before
    assert json.loads((fetch.source_dir("wildbench") / fetch.FETCHED).read_text())["revision"] == "rev1"
    prompts = load_prompts(config_from_dict({"prompts": {"source": "wildbench"}}).prompts, offline=True)
    assert len(prompts) == len(rows)


def test_hf_token_reaches_the_hub_stripped_and_never_its_error(fake_hub, monkeypatch):
    # A token ending in \r (a CRLF .env file) was sent as it was (huggingface_hub cleans only the token it reads
    # itself) and the HTTP library's refusal, quoting it, became the fetch error.
    import huggingface_hub

    hub, _ = fake_hub
    seen = []
    download = huggingface_hub.snapshot_download

    def snapshot_download(repo_id, *, token, **kwargs):
        seen.append(token)
        if hub.get("refuse"):
            raise RuntimeError(f"Illegal header value b'Bearer {token}'")
        return download(repo_id, token=token, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETsecret\r\n")
    fetch.ensure("wildbench", offline=False)
    assert seen == ["hf_SECRETsecret"]
    fetch.source_dir("wildbench").joinpath(fetch.FETCHED).unlink()
    hub["refuse"] = True
    for f in fetch.source_dir("wildbench").rglob("*.parquet"):
        f.unlink()
    with pytest.raises(fetch.FetchError) as info:
        fetch.ensure("wildbench", offline=False)
    assert "hf_SECRET" not in str(info.value) and "<redacted>" in str(info.value)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET\x7fsecret")
    with pytest.raises(fetch.FetchError, match="HF_TOKEN holds a character") as info:
        fetch.ensure("wildbench", offline=False)
    assert "SECRET" not in str(info.value)


def test_hugging_face_data_that_no_longer_matches_the_record_is_refused(fake_hub):
    hub, rows = fake_hub
    path = fetch.ensure("wildbench", offline=False)
    record = (fetch.source_dir("wildbench") / fetch.FETCHED).read_text()
    hub["content"]["rev1"] = rows[:2]  # the same revision answering other bytes (a rewritten history)
    path.unlink()
    with pytest.raises(fetch.FetchError, match=r"at revision rev1 no longer matches what was recorded at the first "
                                               r"fetch: v2/test-00000-of-00001\.parquet \(sha256 "):
        fetch.ensure("wildbench", offline=False)
    assert (fetch.source_dir("wildbench") / fetch.FETCHED).read_text() == record


def test_an_excel_workbook_is_converted_and_openpyxl_is_a_declared_dependency(tmp_path, monkeypatch):
    # MacGyver ships .xlsx files: before, openpyxl was not among the dependencies, so a fresh install could not
    # fetch it. Declared and pinned now; the conversion runs for real over loopback.
    import tomllib

    import openpyxl

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "openpyxl" for d in deps)
    pins = (REPO / "constraints.txt").read_text().splitlines()
    assert "openpyxl==3.1.5" in pins and any(p.startswith("et-xmlfile==") for p in pins)

    served = tmp_path / "served"
    served.mkdir()
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [("Problem", "Solvable?"), ("Open a jar without a grip.", "Yes"), (None, None), ("Fix a tap.", "No")]:
        sheet.append(row)
    book.save(served / "problems.xlsx")
    csv_text = "Problem,Solvable?\r\nOpen a jar without a grip.,Yes\r\nFix a tap.,No\r\n".encode()
    manifests = manifests_folder(tmp_path, monkeypatch)
    with FileServer(served) as server:
        (manifests / "sheet.yaml").write_text(yaml.safe_dump({
            "name": "sheet", "title": "t", "license": "MIT", "homepage": "https://example.org", "main": "p.csv",
            "files": [{"name": "p.csv", "url": f"{server.url}/problems.xlsx", "convert": "xlsx-to-csv",
                       "sha256": hashlib.sha256(csv_text).hexdigest(), "size": len(csv_text)}]}))
        files = fetch.fetch("sheet", progress=False)
    assert files["p.csv"].read_bytes() == csv_text


def test_a_downloaded_workbook_is_measured_before_it_is_parsed_and_parsed_without_entities(tmp_path, monkeypatch):
    # The workbook is parsed before the CSV made from it can be verified: a zip bomb was inflated, and an XML entity
    # expansion ("billion laughs") parsed, by openpyxl as it came.
    import tomllib
    import zipfile

    import openpyxl

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("defusedxml") for d in deps)
    assert "defusedxml==0.7.1" in (REPO / "constraints.txt").read_text().splitlines()
    good = tmp_path / "good.xlsx"
    book = openpyxl.Workbook()
    book.active.append(("Problem",))
    book.save(good)

    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            out.writestr(item, src.read(item.filename))
        out.writestr("xl/padding.bin", b"\0" * (40 * 2**20))  # 40 MB of zeros: about 40 kB packed
    opened = []
    monkeypatch.setattr(openpyxl, "load_workbook", lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(
        AssertionError("parsed")))
    with pytest.raises(fetch.FetchError, match="inflate to 41,9.* bytes .* it was not opened"):
        fetch.xlsx_to_csv(bomb, tmp_path / "out.csv")
    assert opened == []
    monkeypatch.undo()

    # openpyxl parses with defusedxml (entities refused); without it, nothing downloaded is parsed.
    import openpyxl.xml

    assert openpyxl.xml.DEFUSEDXML
    monkeypatch.setattr(openpyxl.xml, "DEFUSEDXML", False)
    with pytest.raises(fetch.FetchError, match="needs defusedxml"):
        fetch.xlsx_to_csv(good, tmp_path / "out.csv")
    monkeypatch.undo()
    # A part that breaks while the sheet is read (read-only mode parses as it iterates) is a FetchError, not a
    # traceback, and leaves no half-written CSV.
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<c r="A1" t="inlineStr"><is><t>Problem</t></is></c>',
                                    b'<c r="A1" t="s"><v>7</v></c>')
            out.writestr(item, data)
    with pytest.raises(fetch.FetchError, match="not a readable Excel workbook"):
        fetch.xlsx_to_csv(broken, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


# The real manifests.
def test_every_manifest_loads_and_the_readme_table_is_generated_from_them():
    known = fetch.sources()
    assert {"simpleqa", "math500", "macgyver", "noveltybench", "wildbench", "community_alignment",
            "darling_pairs"} == set(known)
    readme = (REPO / "README.md").read_text()
    assert fetch.source_table() in readme


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_the_stored_files_verify_against_the_pinned_manifests(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    for name, src in fetch.sources().items():
        if src.pinned:
            files = fetch.import_from(name, SHARED)
            assert set(files) == {f.name for f in src.files}, name


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_the_paper_preset_names_sources_only_and_draws_from_the_cache(tmp_path, monkeypatch):
    from engine.config import load_config

    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    config = load_config(REPO / "configs" / "paper.yaml")
    assert config.prompts.source == "paper" and not config.prompts.paths and not config.prompts.path
    with pytest.raises(ConfigError, match=r"fetch .*simpleqa"):  # nothing cached yet, offline
        load_prompts(config.prompts, offline=True)
    assert main(["fetch", "--from", str(SHARED)]) == 0
    with pytest.raises(ConfigError, match=r"fetch community_alignment wildbench"):
        load_prompts(config.prompts, offline=True)
    prompts = load_prompts(config.prompts, offline=True, skip_missing=True)
    assert len(prompts) == 250  # the two Hugging Face-only sources are not here


@pytest.mark.parametrize("damage", ['{"files": {', '["not", "a", "record"]', '{"files": 3}',
                                    # Entries that are no file's record: an AttributeError and a KeyError.
                                    '{"files": {"test.jsonl": 5}}', '{"files": {"test.jsonl": {"sha256": "ab"}}}'])
def test_a_damaged_fetch_record_is_not_fetched_not_a_traceback(served, damage, capsys):
    # A crash while the record was written (it was renamed into place unsynced), or an edit by hand: every plan, run
    # and `fetch --list` ended in a JSONDecodeError traceback naming no file. The source counts as not fetched, and
    # fetching it again mends the record.
    from engine.cli import main

    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url)
        fetch.fetch("math500", progress=False)
        (fetch.source_dir("math500") / fetch.FETCHED).write_text(damage)
        assert fetch.cached_files(fetch.source("math500")) is None
        with pytest.raises(fetch.FetchError, match="fetch math500"):
            fetch.ensure("math500", offline=True)
        assert main(["fetch", "--list"]) == 0
        assert "Traceback" not in capsys.readouterr().err
        assert fetch.fetch("math500", progress=False)["test.jsonl"].read_bytes() == data
    assert fetch.cached_files(fetch.source("math500")) is not None


# Community Alignment: copies of the dataset name its file differently, and the hub could not be checked offline.
CA_SAMPLE = REPO / "tests" / "test_data" / "community_alignment_sample.csv"
CA_SHA = "97343c7f" + "0" * 32


@pytest.fixture
def ca_hub(tmp_path, monkeypatch):
    """The real community_alignment manifest, the cache in tmp_path, and a hub whose repository holds `hub["files"]`
    (name → bytes): listed by dataset_info, and downloaded by snapshot_download where they match allow_patterns
    (fnmatch, as huggingface_hub filters them)."""
    import fnmatch
    import shutil

    import huggingface_hub

    manifests = manifests_folder(tmp_path, monkeypatch)
    shutil.copy(REPO / "datasets" / "sources" / "community_alignment.yaml", manifests)
    hub = {"files": {}, "downloads": []}

    class Api:
        def dataset_info(self, repo_id, revision=None, token=None):
            assert repo_id == "facebook/community-alignment-dataset"
            siblings = [type("Sibling", (), {"rfilename": name})() for name in hub["files"]]
            return type("Info", (), {"sha": revision or CA_SHA, "siblings": siblings})()

    def snapshot_download(repo_id, *, repo_type, revision, allow_patterns, local_dir, token):
        hub["downloads"].append((revision, list(allow_patterns)))
        for name, data in hub["files"].items():
            if any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(local_dir) / name).write_bytes(data)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return hub


@pytest.mark.parametrize("layout,taken", [
    (["README.md", "community_alignment.csv"], "community_alignment.csv"),  # public scripts' name, at the root
    (["README.md", "data/filtered_community_alignment.csv", "data/full_community_alignment.csv"],
     "data/filtered_community_alignment.csv"),  # split "filtered", as older code loads it
    (["data/filtered_community_alignment.csv", "community_alignment.csv"], "community_alignment.csv"),  # the first
])
def test_community_alignment_is_fetched_under_either_name_and_the_one_taken_is_recorded(ca_hub, capsys, layout,
                                                                                         taken):
    # The manifest asked for data/filtered_community_alignment.csv alone: a repository holding community_alignment.csv
    # (as public scripts download it) was "no file matching", and the source could not be had at all.
    data = CA_SAMPLE.read_bytes()
    ca_hub["files"] = {name: data for name in layout}
    assert main(["fetch", "community_alignment"]) == 0
    out = capsys.readouterr().out
    assert f"revision {CA_SHA}; {taken}: 6 rows" in out  # what was fetched, said: the revision and the rows
    assert ca_hub["downloads"] == [(CA_SHA, [taken])]  # one file, not every alternative
    record = json.loads((fetch.source_dir("community_alignment") / fetch.FETCHED).read_text())
    assert record["revision"] == CA_SHA and list(record["files"]) == [taken]
    assert record["files"][taken]["pattern"] == taken and record["files"][taken]["sha256"] == hashlib.sha256(
        data).hexdigest()
    from engine.inputs.prompts import LoadReport

    report = LoadReport()
    prompts = load_prompts(config_from_dict({"prompts": {"source": "community_alignment"}}).prompts, report,
                           offline=True)
    assert len(prompts) == 3 and "1 repeats of an earlier row's prompt folded into it" in report.warnings[0]


def test_a_repository_without_the_file_is_told_with_the_files_it_has(ca_hub, capsys):
    ca_hub["files"] = {"README.md": b"card", **{f"data/part-{k:02}.parquet": b"x" for k in range(10)}}
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch("community_alignment", progress=False)
    assert str(info.value) == (
        f"source community_alignment: facebook/community-alignment-dataset at revision {CA_SHA} has no file "
        "matching 'community_alignment.csv' or 'data/filtered_community_alignment.csv'; it has README.md, "
        "data/part-00.parquet, data/part-01.parquet, data/part-02.parquet, data/part-03.parquet, "
        "data/part-04.parquet, data/part-05.parquet, data/part-06.parquet … (11 files)")
    assert ca_hub["downloads"] == []  # nothing downloaded for a repository that lacks the file
    assert main(["fetch", "community_alignment"]) == 2
    err = capsys.readouterr().err
    assert "error: community_alignment: facebook/community-alignment-dataset at revision" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["community_alignment/community_alignment.csv",
                                   "data/filtered_community_alignment.csv"])
def test_community_alignment_imports_from_a_folder_under_either_name(ca_hub, tmp_path, capsys, where):
    have = tmp_path / "have"
    (have / where).parent.mkdir(parents=True)
    (have / where).write_bytes(CA_SAMPLE.read_bytes())
    assert main(["fetch", "community_alignment", "--from", str(have)]) == 0
    out = capsys.readouterr().out
    name = where.removeprefix("community_alignment/")
    assert f"revision not known (imported, not pinned); {name}: 6 rows" in out
    record = json.loads((fetch.source_dir("community_alignment") / fetch.FETCHED).read_text())
    assert record["files"][name]["imported"] == str(have / where) and record["revision"] is None
    path = fetch.ensure("community_alignment", offline=True)
    assert path == fetch.source_dir("community_alignment") / name


# Provenance: fetching again rewrote the whole record.
def test_a_file_imported_then_fetched_again_keeps_where_it_was_imported_from(served, tmp_path):
    files, data, manifest = served
    have = tmp_path / "have"
    (have / "math500").mkdir(parents=True)
    (have / "math500" / "test.jsonl").write_bytes(data)
    with FileServer(files) as server:
        manifest(server.url)
        fetch.import_from("math500", have)
        fetch.source_dir("math500").joinpath("test.jsonl").unlink()
        fetch.fetch("math500", progress=False)  # downloaded again: the same bytes
        assert len(server.requests) == 1
    entry = json.loads((fetch.source_dir("math500") / fetch.FETCHED).read_text())["files"]["test.jsonl"]
    assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "url": f"{server.url}/test.jsonl",
                     "imported": str(have / "math500" / "test.jsonl"), "imported_from": str(have.resolve())}
    new = data + data[:200]  # other bytes (a manifest pinned anew): the old entry says nothing of them
    (files / "test.jsonl").write_bytes(new)
    with FileServer(files) as server:
        (fetch.SOURCES_DIR / "math500.yaml").write_text(yaml.safe_dump({
            "name": "math500", "title": "test math", "license": "MIT", "homepage": "https://example.org",
            "loader": "math500", "main": "test.jsonl",
            "files": [{"name": "test.jsonl", "url": f"{server.url}/test.jsonl",
                       "sha256": hashlib.sha256(new).hexdigest(), "size": len(new)}]}))
        fetch.fetch("math500", progress=False)
    entry = json.loads((fetch.source_dir("math500") / fetch.FETCHED).read_text())["files"]["test.jsonl"]
    assert entry == {"sha256": hashlib.sha256(new).hexdigest(), "size": len(new), "url": f"{server.url}/test.jsonl"}


def test_importing_a_hugging_face_source_keeps_the_fetched_revision_where_the_bytes_are_the_same(fake_hub, tmp_path):
    # Imported over a copy fetched online, the record's commit became revision: null.
    import shutil

    hub, rows = fake_hub
    cached = fetch.ensure("wildbench", offline=False)
    have = tmp_path / "have" / "wildbench" / "v2"
    have.mkdir(parents=True)
    shutil.copy(cached, have / cached.name)
    fetch.import_from("wildbench", tmp_path / "have")
    record = json.loads((fetch.source_dir("wildbench") / fetch.FETCHED).read_text())
    entry = record["files"]["v2/test-00000-of-00001.parquet"]
    assert record["revision"] == "rev1" and entry["imported"] == str(have / cached.name)
    assert entry["pattern"] == "v2/*.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:2]), have / cached.name)  # other bytes: no longer rev1's
    fetch.import_from("wildbench", tmp_path / "have")
    record = json.loads((fetch.source_dir("wildbench") / fetch.FETCHED).read_text())
    assert record["revision"] is None and "url" not in record["files"]["v2/test-00000-of-00001.parquet"]


# MacGyver's workbooks: parsed by openpyxl before the CSV made from them can be verified.
def test_the_macgyver_manifest_pins_its_workbooks():
    # The git blobs of the two paths at the pinned commit (2559be24…, bfe88fd7…): 569,095 and 100,502 bytes.
    assert [(f.name, f.download_size, f.download_sha256[:12]) for f in fetch.source("macgyver").files] == [
        ("problem_solution_pair.csv", 569095, "85faadd871e0"), ("additional_human_solutions.csv", 100502,
                                                               "de9f6c7f6ebd")]


def test_a_workbook_is_checked_against_its_pins_before_it_is_parsed(tmp_path, monkeypatch):
    import shutil

    import openpyxl

    served = tmp_path / "served"
    served.mkdir()
    book = openpyxl.Workbook()
    for row in [("Problem", "Solvable?"), ("Open a jar without a grip.", "Yes")]:
        book.active.append(row)
    book.save(served / "problems.xlsx")
    good = (served / "problems.xlsx").read_bytes()
    csv_text = "Problem,Solvable?\r\nOpen a jar without a grip.,Yes\r\n".encode()
    manifests = manifests_folder(tmp_path, monkeypatch)
    folder = tmp_path / "cache" / "datasets" / "sheet"

    def manifest(url: str, **pins) -> None:
        (manifests / "sheet.yaml").write_text(yaml.safe_dump({
            "name": "sheet", "title": "t", "license": "MIT", "homepage": "https://example.org", "main": "p.csv",
            "files": [{"name": "p.csv", "url": f"{url}/problems.xlsx", "convert": "xlsx-to-csv", **pins,
                       "sha256": hashlib.sha256(csv_text).hexdigest(), "size": len(csv_text)}]}))

    pins = {"download_sha256": hashlib.sha256(good).hexdigest(), "download_size": len(good)}
    parsed = []
    load_workbook = openpyxl.load_workbook
    monkeypatch.setattr(openpyxl, "load_workbook", lambda *a, **k: parsed.append(a[0]) or load_workbook(*a, **k))
    with FileServer(served) as server:
        manifest(server.url, **pins)
        assert fetch.fetch("sheet", progress=False)["p.csv"].read_bytes() == csv_text and len(parsed) == 1
        assert sorted(p.name for p in folder.iterdir()) == [fetch.FETCHED, "p.csv"]  # the workbook deleted

        shutil.rmtree(folder)
        (served / "problems.xlsx").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit changed
        with pytest.raises(fetch.FetchError, match=rf"p\.csv: the downloaded workbook problems\.xlsx: sha256 "
                                                   rf"mismatch — expected {pins['download_sha256']}, got "):
            fetch.fetch("sheet", progress=False)
        (served / "problems.xlsx").write_bytes(good + b"\0" * 5000)
        with pytest.raises(fetch.FetchError, match=rf"sends {len(good) + 5000} bytes, the manifest pins {len(good)}"):
            fetch.fetch("sheet", progress=False)
        assert len(parsed) == 1 and not [p for p in folder.iterdir() if "xlsx" in p.name]  # neither was opened

        # Not pinned: still not downloaded past a cap, as it is parsed before anything verifies it.
        monkeypatch.setattr(fetch, "MAX_WORKBOOK_DOWNLOAD", 1000)
        manifest(server.url)
        with pytest.raises(fetch.FetchError, match=rf"sends {len(good) + 5000} bytes, an unpinned workbook may "
                                                   r"have 1000"):
            fetch.fetch("sheet", progress=False)
    assert len(parsed) == 1

    # A pin on the download of a file that is not converted means nothing: said, naming the key.
    (manifests / "sheet.yaml").write_text(yaml.safe_dump({
        "name": "sheet", "title": "t", "license": "MIT", "homepage": "https://example.org", "main": "p.csv",
        "files": [{"name": "p.csv", "url": "http://127.0.0.1:9/p.csv", "download_size": 5}]}))
    with pytest.raises(fetch.FetchError, match=r"sheet\.yaml: files\[0\]\.download_size: only for a file that is "
                                               r"converted"):
        fetch.source("sheet")
