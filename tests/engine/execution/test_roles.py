"""Every role switches backend by config alone: generator, classifier, judges and embedder all served over HTTP
give exactly the tables of the same models called in-process."""

import pytest

from actors.embed import LocalEmbedder
from tests.support.serve import ChatServer
from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline
from tests.support.doubles import ScriptedChat

DIRECT = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted"}
TABLES = ["classifications", "samples", "responses", "judgments", "components", "metrics", "quality", "groups"]


def run(run_dir, model, embedder, **extra):
    cfg = config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "builtin", "per_category": 1, "limit": 3}, "n": 3,
        "strategies": ["temperature", "regen_anchored"], "generators": [model], "judges": [model],
        "embedder": embedder, "execution": {"executor": "local"}, **extra,
    })
    p = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        return p.run().tables
    finally:
        p.close()


def test_all_roles_over_http_equal_in_process(tmp_path):
    direct = run(tmp_path / "direct", DIRECT, {"backend": "local"})
    embedder = LocalEmbedder()
    with ChatServer(ScriptedChat(), embedder=embedder) as server:
        remote = {"name": "scripted", "backend": "http", "model": "scripted", "options": {"base_url": server.base_url}}
        over_http = run(tmp_path / "http", remote,
                        {"backend": "http", "model": "scripted", "options": {"base_url": server.base_url}})
        paths = {r.body.get("messages") is not None for r in server.requests}
    assert paths == {True}
    for name in TABLES:
        a, b = direct[name], over_http[name]
        if name in ("metrics", "groups"):
            # Embeddings cross the wire as JSON floats: equal to float32 rounding, not bit for bit.
            # The Vendi score is read from the same cosine matrix.
            approx = ["embed_div", *(["vendi"] if name == "groups" else [])]
            for x, y in zip(a.to_pylist(), b.to_pylist()):
                for column in approx:
                    assert x[column] == pytest.approx(y[column], abs=1e-5), column
            dropped = [*approx, *(["pair_cosine"] if name == "metrics" else [])]
            a, b = a.drop_columns(dropped), b.drop_columns(dropped)
        assert b.equals(a), name


def test_http_embedder_returns_normalised_vectors():
    from actors.http import OpenAIChatClient

    with ChatServer(ScriptedChat(), embedder=LocalEmbedder()) as server:
        client = OpenAIChatClient("scripted", base_url=server.base_url)
        try:
            vectors = client.embed(["a cat", "a dog", "quantum chromodynamics"], batch_size=2)
        finally:
            client.close()
    assert vectors.shape == (3, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-5
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
