"""Folder: local directories, fsspec URLs and hub ids resolved offline from a cache folder built here."""

import json
import os

import fsspec
import pytest

from textbatch.storage import Folder, HubFolder, looks_like_hub_id

REVISION = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache, repo_id="tiny-org/tiny-model", files=None, ref="main"):
    """A huggingface_hub cache as downloads leave it: refs/<branch> holds the commit, snapshots/<commit>/ the files."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / ref).write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, data in (files or {"config.json": b'{"hidden_size": 24}'}).items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_local_folder_reads_writes_and_names_paths(tmp_path):
    folder = Folder.open(tmp_path / "model", create=True)
    folder.write_bytes("sub/config.json", b'{"a": 3}')

    assert folder.exists("sub/config.json") and not folder.exists("nothing.json")
    assert folder.read_json("sub/config.json") == {"a": 3}
    assert folder.local_path("sub/config.json") == str(tmp_path / "model" / "sub" / "config.json")
    assert folder.location("x.bin") == str(tmp_path / "model" / "x.bin")
    with folder.open_file("sub/config.json") as handle:
        assert handle.read(2) == b'{"'
    # Re-opened without create, it is found as an existing directory.
    assert Folder.open(str(tmp_path / "model")).read_bytes("sub/config.json") == b'{"a": 3}'


def test_missing_file_and_bad_json_name_the_path(tmp_path):
    folder = Folder.open(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        folder.read_bytes("absent.bin")
    with pytest.raises(ValueError, match="bad.json"):
        folder.read_json("bad.json")


def test_missing_local_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        Folder.open(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(FileNotFoundError, match=r"\./relative"):
        Folder.open("./relative")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="weights.bin"):
        Folder.open(tmp_path / "weights.bin")
    with pytest.raises(NotADirectoryError, match="weights.bin"):
        Folder.open(tmp_path / "weights.bin", create=True)


def test_memory_url_round_trip():
    folder = Folder.open("memory://storage-test/run-7/model", create=True)
    folder.write_bytes("config.json", json.dumps({"layers": 3}).encode())

    again = Folder.open("memory://storage-test/run-7/model")
    assert again.read_json("config.json") == {"layers": 3}
    assert again.exists("config.json") and not again.exists("model.safetensors")
    assert again.local_path("config.json") is None
    assert again.location("config.json") == "memory:///storage-test/run-7/model/config.json"
    with pytest.raises(FileNotFoundError, match="memory:///storage-test/run-7/model/absent"):
        again.read_bytes("absent")
    fsspec.filesystem("memory").rm("/storage-test", recursive=True)


def test_file_url_is_local(tmp_path):
    folder = Folder.open(f"file://{tmp_path}/out", create=True)
    folder.write_bytes("a.bin", b"\x00\x01")
    assert folder.local_path("a.bin") == f"{tmp_path}/out/a.bin"
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"\x00\x01"


def test_hub_id_shapes():
    assert looks_like_hub_id("FacebookAI/xlm-roberta-base")
    assert looks_like_hub_id("t5-small")
    assert not looks_like_hub_id("./model")
    assert not looks_like_hub_id("/abs/model")
    assert not looks_like_hub_id("a/b/c")
    assert not looks_like_hub_id("org/bad--name")


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_hub_id_resolves_offline_from_cache(tmp_path, monkeypatch, via):
    cache = tmp_path / "hub-cache"
    snapshot = make_hub_cache(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if via == "environment":
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        folder = Folder.open("tiny-org/tiny-model")
    else:
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
        folder = Folder.open("tiny-org/tiny-model", cache_dir=cache)

    assert isinstance(folder, HubFolder)
    assert folder.read_json("config.json") == {"hidden_size": 24}
    assert folder.local_path("config.json") == str(snapshot / "config.json")
    assert folder.exists("config.json") and not folder.exists("model.safetensors")
    assert "tiny-org/tiny-model" in folder.location("config.json")
    with pytest.raises(PermissionError):
        folder.write_bytes("x.json", b"{}")


def test_hub_revision_by_branch_name(tmp_path, monkeypatch):
    cache = tmp_path / "hub-cache"
    make_hub_cache(cache, ref="v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Folder.open("tiny-org/tiny-model", revision="v2", cache_dir=cache).exists("config.json")
    assert Folder.open("tiny-org/tiny-model", revision=REVISION, cache_dir=cache).exists("config.json")
    with pytest.raises(FileNotFoundError, match="'main'"):
        Folder.open("tiny-org/tiny-model", cache_dir=cache)


def test_hub_id_offline_and_not_cached_names_id_and_cache(tmp_path, monkeypatch):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as raised:
        Folder.open("tiny-org/not-downloaded", cache_dir=cache)
    assert "tiny-org/not-downloaded" in str(raised.value)
    assert str(cache) in str(raised.value)
    assert "HF_HUB_OFFLINE" in str(raised.value)


def test_existing_local_folder_wins_over_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("org/model")
    folder = Folder.open("org/model")
    assert not isinstance(folder, HubFolder)
    assert folder.local_path("a") == str(tmp_path / "org" / "model" / "a")
