"""Which weight files a layer range needs, and the Hugging Face download of only those files,
against a local fake of the Hub's HTTP API on 127.0.0.1 (no network)."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlx_mesh_engine.errors import EngineError
from mlx_mesh_engine.layer_files import files_for_range, needs_tensor

# A 4-layer checkpoint in two shards: layers 0-1 and the embedding in the first, layers 2-3, the
# final norm and the head in the second.
WEIGHT_MAP = {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
    "model.layers.1.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
    "model.layers.2.self_attn.q_proj.weight": "model-00002-of-00002.safetensors",
    "model.layers.3.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
    "model.norm.weight": "model-00002-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
}
FIRST, SECOND = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def test_a_range_needs_its_layers_and_the_ends_it_holds():
    assert files_for_range(WEIGHT_MAP, 0, 2, 4, tied=False) == {FIRST}
    assert files_for_range(WEIGHT_MAP, 2, 4, 4, tied=False) == {SECOND}
    assert files_for_range(WEIGHT_MAP, 0, 4, 4, tied=False) == {FIRST, SECOND}
    # A middle stage needs neither the embedding nor the head.
    assert files_for_range(WEIGHT_MAP, 1, 2, 4, tied=False) == {FIRST}


def test_a_tied_head_makes_the_last_stage_need_the_embedding():
    tied = {k: v for k, v in WEIGHT_MAP.items() if k != "lm_head.weight"}
    assert files_for_range(tied, 2, 4, 4, tied=True) == {FIRST, SECOND}
    assert files_for_range(tied, 2, 4, 4, tied=False) == {SECOND}


def test_layer_names_with_and_without_the_model_prefix():
    assert needs_tensor("layers.3.attn.weight", 3, 4, 4, False)
    assert needs_tensor("model.layers.3.attn.weight", 3, 4, 4, False)
    assert not needs_tensor("model.layers.30.attn.weight", 3, 4, 40, False)
    assert needs_tensor("model.layers.30.attn.weight", 30, 31, 40, False)


class FakeHub:
    """The few Hub endpoints huggingface_hub's snapshot_download uses, serving one repo from memory."""

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repo: str, files: dict):
        self.repo, self.files, self.downloads = repo, files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body=b"", headers=None, head=False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def route(self, head):
                path = self.path.split("?")[0]
                api = f"/api/models/{hub.repo}/"
                if path.startswith(api + "tree/"):
                    tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()} for f, d in hub.files.items()]
                    return self.reply(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                if path.startswith(api + "revision/"):
                    info = {"id": hub.repo, "sha": hub.SHA, "siblings": [{"rfilename": f} for f in hub.files]}
                    return self.reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                prefix = f"/{hub.repo}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix):].split("/", 1)[1]
                    if name in hub.files:
                        data = hub.files[name]
                        if not head:
                            hub.downloads.append(name)
                        etag = '"%s"' % hashlib.sha256(data).hexdigest()
                        return self.reply(200, data, {"X-Repo-Commit": hub.SHA, "ETag": etag}, head)
                self.reply(404, b"", {"X-Error-Code": "RepoNotFound"}, head)

            def do_GET(self):
                self.route(False)

            def do_HEAD(self):
                self.route(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    config = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 8, "tie_word_embeddings": False}
    files = {
        "config.json": json.dumps(config).encode(),
        "tokenizer.json": b"{}",
        "model.safetensors.index.json": json.dumps({"weight_map": WEIGHT_MAP}).encode(),
        FIRST: b"1" * 1000,
        SECOND: b"2" * 2000,
        "README.md": b"not needed",
    }
    server = FakeHub("org/tiny", files)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    yield server
    server.close()


def test_download_fetches_metadata_and_only_the_ranges_files(hub, tmp_path):
    from mlx_mesh_engine.hf_download import download

    out = tmp_path / "first"
    result = download("org/tiny", str(out), 0, 2, None)
    assert result["files"] == [FIRST]
    assert (out / FIRST).read_bytes() == b"1" * 1000
    assert not (out / SECOND).exists()
    assert not (out / "README.md").exists()
    assert SECOND not in hub.downloads

    out2 = tmp_path / "second"
    assert download("org/tiny", str(out2), 2, 4, None)["files"] == [SECOND]
    assert (out2 / SECOND).stat().st_size == 2000 and not (out2 / FIRST).exists()


def test_download_without_a_range_fetches_every_shard(hub, tmp_path):
    from mlx_mesh_engine.hf_download import download

    result = download("org/tiny", str(tmp_path / "all"), None, None, None)
    assert result["files"] == [FIRST, SECOND]


def test_an_unknown_repo_is_model_not_found_with_the_fix(hub, tmp_path):
    from mlx_mesh_engine.hf_download import download

    with pytest.raises(EngineError) as info:
        download("org/missing", str(tmp_path / "x"), 0, 1, None)
    assert info.value.code == "MODEL_NOT_FOUND"
    assert "--model" in info.value.message
