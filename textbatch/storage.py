"""Where checkpoints and tokenizer files live: a local folder, any fsspec URL, or a Hugging Face hub id.

`Folder.open(...)` returns one object with the same few methods whatever the backing store, so model and tokenizer
loading never branch on where the files are. Hub ids resolve to a snapshot folder in huggingface_hub's cache; files
are downloaded one by one when first asked for (so reading `model.safetensors` never pulls `pytorch_model.bin` too),
and only when online. `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and `HF_HOME` are read at call time, not import time, so they
can be set after import.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from textbatch.redact import redact

logger = logging.getLogger(__name__)

# "org/name" or a legacy single "name": letters, digits, "_", ".", "-"; no "--" or ".." (hub rules).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_TRUE = {"1", "on", "yes", "true"}


def looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and "--" not in text and ".." not in text and len(text) <= 96


def hub_offline() -> bool:
    """True when the user asked for no hub traffic (read now, so a later `os.environ` change counts)."""
    import huggingface_hub.constants as hub_constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if env is not None:
        return env.strip().lower() in _TRUE
    return bool(hub_constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """The huggingface_hub cache: the argument, else $HF_HUB_CACHE, else $HF_HOME/hub, else the library default."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    import huggingface_hub.constants as hub_constants

    return hub_constants.HF_HUB_CACHE


class Folder:
    """A directory of files on some filesystem (local disk, memory://, s3://, gs://, ...)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str):
        self.fs = fs
        self.root = root.rstrip("/") or "/"

    @classmethod
    def open(
        cls,
        path_or_url: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        create: bool = False,
    ) -> Folder:
        """Open a folder to read from (or, with `create=True`, to write to; it need not exist yet).

        Resolution order: a URL with "://" goes to fsspec; an existing local directory is used as is; otherwise a
        string shaped like a hub id ("org/name") is looked up in the huggingface_hub cache / on the hub.
        `revision` and `cache_dir` only apply to hub ids.
        """
        if isinstance(path_or_url, Folder):
            return path_or_url
        text = os.fspath(path_or_url)
        if "://" in text:
            fs, root = fsspec.core.url_to_fs(text)
            return cls(fs, root)
        if os.path.isdir(text) or create:
            if os.path.exists(text) and not os.path.isdir(text):
                raise NotADirectoryError(f"{text!r} is a file; a model or tokenizer is stored as a folder")
            return cls(LocalFileSystem(), os.path.abspath(text))
        if os.path.exists(text):
            raise NotADirectoryError(f"{text!r} is a file; a model or tokenizer is stored as a folder")
        if looks_like_hub_id(text):
            return HubFolder.resolve(text, revision=revision, cache_dir=cache_dir)
        raise FileNotFoundError(f"No such folder: {text!r} (and it is not a hub id like 'org/name')")

    # -- paths ---------------------------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name) if name else self.root

    def location(self, name: str = "") -> str:
        """Human-readable path or URL of `name` in this folder, for messages (credentials redacted)."""
        path = self._path(name)
        if isinstance(self.fs, LocalFileSystem):
            return path
        return redact(self.fs.unstrip_protocol(path))

    def local_path(self, name: str) -> str | None:
        """A path on the local filesystem (for mmap), or None when the folder is remote."""
        if isinstance(self.fs, LocalFileSystem):
            return self._path(name)
        return None

    # -- reading -------------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.fs.isfile(self._path(name))

    def open_file(self, name: str, mode: str = "rb") -> IO[Any]:
        """A file object; for a writing mode the folder is created first."""
        if any(flag in mode for flag in "wax"):
            self.fs.makedirs(self.root, exist_ok=True)
            parent = posixpath.dirname(self._path(name))
            if parent != self.root:
                self.fs.makedirs(parent, exist_ok=True)
        elif not self.exists(name):
            raise FileNotFoundError(f"{self.location(name)} does not exist")
        return self.fs.open(self._path(name), mode)

    def read_bytes(self, name: str) -> bytes:
        with self.open_file(name, "rb") as handle:
            return handle.read()

    def read_json(self, name: str) -> dict:
        text = self.read_bytes(name)
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{self.location(name)} is not valid JSON: {error}") from error

    # -- writing -------------------------------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open_file(name, "wb") as handle:
            handle.write(data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location()!r})"


class HubFolder(Folder):
    """A hub repository as a snapshot folder of the local cache; files are fetched on first use when online."""

    def __init__(self, snapshot_dir: str, repo_id: str, revision: str, cache_dir: str, remote_files: set[str] | None):
        super().__init__(LocalFileSystem(), snapshot_dir)
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = cache_dir
        self._remote_files = remote_files  # None when offline: only what is cached counts

    @classmethod
    def resolve(cls, repo_id: str, *, revision: str | None = None, cache_dir=None) -> HubFolder:
        import huggingface_hub
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

        cache = hub_cache_dir(cache_dir)
        revision = revision or "main"
        online_error: Exception | None = None
        if not hub_offline():
            try:
                info = huggingface_hub.HfApi().model_info(repo_id, revision=revision)
            except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError):
                raise
            except Exception as error:  # no connection, hub down, ...: the cache may still have it
                logger.warning("Could not reach the hub for %s (%s); trying the local cache %s", repo_id, error, cache)
                online_error = error
            else:
                # Pin the commit so every file comes from the same one, and record the ref as hub downloads do,
                # so a later offline run finds this snapshot by branch name.
                repo_dir = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
                if info.sha != revision:
                    ref_path = os.path.join(repo_dir, "refs", *revision.split("/"))
                    os.makedirs(os.path.dirname(ref_path), exist_ok=True)
                    with open(ref_path, "w") as ref:
                        ref.write(info.sha)
                files = {sibling.rfilename for sibling in info.siblings or []}
                return cls(os.path.join(repo_dir, "snapshots", info.sha), repo_id, info.sha, cache, files)
        try:
            snapshot = huggingface_hub.snapshot_download(
                repo_id, revision=revision, cache_dir=cache, local_files_only=True
            )
        except Exception as error:
            why = "HF_HUB_OFFLINE is set" if online_error is None else f"the hub could not be reached: {online_error}"
            raise FileNotFoundError(
                f"{repo_id!r} (revision {revision!r}) is neither a local folder nor in the hub cache {cache}, "
                f"and {why}. Download it while online, or pass a local folder."
            ) from error
        return cls(snapshot, repo_id, revision, cache, None)

    def _fetch(self, name: str) -> None:
        """Download `name` into the snapshot when it is on the hub but not yet cached."""
        if os.path.isfile(self._path(name)) or self._remote_files is None or name not in self._remote_files:
            return
        import huggingface_hub

        logger.info("Downloading %s from %s", name, self.repo_id)
        huggingface_hub.hf_hub_download(self.repo_id, name, revision=self.revision, cache_dir=self.cache_dir)

    def exists(self, name: str) -> bool:
        if os.path.isfile(self._path(name)):
            return True
        return self._remote_files is not None and name in self._remote_files

    def open_file(self, name: str, mode: str = "rb") -> IO[Any]:
        if any(flag in mode for flag in "wax+"):
            raise PermissionError(f"{self.location()} is a hub snapshot; save to a local folder or URL instead")
        self._fetch(name)
        return super().open_file(name, mode)

    def local_path(self, name: str) -> str | None:
        self._fetch(name)
        return super().local_path(name)

    def location(self, name: str = "") -> str:
        where = f"hub:{self.repo_id}" + (f"/{name}" if name else "")
        return f"{where} (cached at {self._path(name)})"
