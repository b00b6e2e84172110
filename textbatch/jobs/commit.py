"""How a job's output is committed: complete or absent, resumable after a kill, and extendable night after night.

An output folder holds:

    _SUCCESS                                  the manifest: the committed part files and the input files each came
                                              from; written last, in one write. Readers go through it
                                              (textbatch.outputs.read_output).
    part-<input>-<group>-<attempt>-<task>.parquet   committed parts (and, until a commit cleans up, parts it replaced)
    _temporary/<attempt>/_attempt.json        a run in progress: its options' fingerprint and its input groups
    _temporary/<attempt>/<part>.parquet       a part being written ...
    _temporary/<attempt>/<part>.json          ... and its marker, written after it: the part is complete

A run (`plan_commit`) works out which input groups (jobs/input_groups.py) are already done: the complete groups of
an earlier attempt with the same options that never committed (a run that was killed: *resume*), and with
`incremental`, the groups the manifest lists whose files have not changed. It processes the other input files,
writing into its own `_temporary/<attempt>/`; nothing there is output (every reader skips `_`-prefixed folders).
`finish` moves the parts of done groups to the top of the folder, writes the new manifest, and only then deletes what
the manifest no longer lists: an earlier run's output is replaced, never removed before its replacement is committed.
A group is complete when the markers of one attempt count all its rows, so a part written twice or half is never
mistaken for output. Two runs writing into one output folder at the same time are not supported.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import posixpath
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec

from textbatch.jobs.input_groups import InputFile, InputGroup, group_inputs
from textbatch.outputs import MANIFEST_NAME, STAGING_DIR
from textbatch.redact import redact

logger = logging.getLogger(__name__)

ATTEMPT_FILE = "_attempt.json"
PART_SUFFIX = ".parquet"
MARKER_SUFFIX = ".json"
MANIFEST_FORMAT = 1
# Metadata that does not change a row's result: a rerun that differs only in these still resumes or extends. Which
# bad input files were left out (and whether they may be) changes which files are processed, not their rows.
RUN_ONLY_OPTIONS = ("textbatch_version", "batch_tokens", "devices_per_actor", "mesh", "on_bad_file", "skipped_files")


def fingerprint(metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(a short hash, the options it hashes): what must be equal for two runs' rows to be interchangeable."""
    options = {key: value for key, value in metadata.items() if key not in RUN_ONLY_OPTIONS}
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], json.loads(text)


def marker_bytes(part: str, group: str, rows: int) -> bytes:
    """The marker a write task writes after a part file: the part is complete and holds `rows` rows of `group`."""
    return json.dumps({"part": part, "group": group, "rows": rows}).encode()


@dataclasses.dataclass(frozen=True)
class DoneGroup:
    """An input group whose rows are all written: its part files (name, rows) and the attempt that wrote them."""

    group: InputGroup
    parts: tuple[tuple[str, int], ...]
    attempt: str
    published: bool = False  # the parts are already at the top of the output folder (listed by the manifest)

    def record(self) -> dict:
        return {
            **self.group.record(),
            "attempt": self.attempt,
            "parts": [{"path": name, "rows": rows} for name, rows in self.parts],
        }


@dataclasses.dataclass(frozen=True)
class CommitReport:
    """What the manifest now lists, and what this run did with the inputs."""

    files: int  # part files in the output
    rows: int  # rows in the output
    input_files: int  # input files found
    processed_files: int  # of which this run processed
    committed_files: int  # of which were already committed (a resumed run, --incremental)


class OutputCommit:
    """One run's commit of its output folder: what to process (`todo`, `sources`, `groups`), where to write
    it (`staging`), and `finish()`."""

    def __init__(
        self,
        location: str,
        fs: fsspec.AbstractFileSystem,
        root: str,
        *,
        job: str,
        options: tuple[str, dict[str, Any]],
        todo: list[InputGroup],
        done: list[DoneGroup],
        input_files: int,
    ):
        self.location = location
        self.fs = fs
        self.root = root
        self.job = job
        self.fingerprint, self.options = options
        self.todo = todo
        self.done = done
        self.input_files = input_files
        self.attempt = uuid.uuid4().hex

    # -- what this run writes, and where ---------------------------------------------------------------------------
    @property
    def staging_path(self) -> str:
        """The attempt's folder on `fs` (no protocol)."""
        return posixpath.join(self.root, STAGING_DIR, self.attempt)

    @property
    def staging(self) -> str:
        """The attempt's folder as a location (a local path, or a URL with the output's protocol)."""
        if getattr(self.fs, "local_file", False):
            return self.staging_path
        return self.fs.unstrip_protocol(self.staging_path)

    def sources(self) -> dict[str, int]:
        """Each input file to read (path on its filesystem) -> the index of its group in `groups()`."""
        return {file.path: index for index, group in enumerate(self.todo) for file in group.files}

    def groups(self) -> tuple[tuple[str, str], ...]:
        """(the start of its part names, its key) for each group to process; a write task appends its number."""
        return tuple((f"{group.label}-{self.attempt[:8]}", group.key) for group in self.todo)

    def start(self) -> None:
        """Record the attempt (its options and groups) before any part is written, so a rerun can resume it."""
        record = {
            "attempt": self.attempt,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "started": _now(),
            "groups": [group.record() for group in self.todo],
        }
        self.fs.makedirs(self.staging_path, exist_ok=True)
        self.fs.pipe_file(posixpath.join(self.staging_path, ATTEMPT_FILE), json.dumps(record).encode())

    # -- committing -------------------------------------------------------------------------------------------------
    def finish(self) -> CommitReport:
        """Publish every done group's parts, write the manifest (the commit), then delete what it no longer lists."""
        written = _attempt_parts(self.fs, self.staging_path) if self.todo else {}
        finished = []
        for group in self.todo:
            parts = tuple(written.get(group.key, ()))
            rows = sum(count for _, count in parts)
            if rows != group.rows:
                # The run succeeded, so every row that reached the sink was written; a difference means rows were
                # left out upstream. Say so rather than hide it (the manifest records both counts).
                logger.warning(
                    "input group %s (%s) has %d rows but %d were written",
                    group.key,
                    ", ".join(redact(file.path) for file in group.files),
                    group.rows,
                    rows,
                )
            finished.append(DoneGroup(group, parts, self.attempt))
        groups = self.done + finished
        self._publish([group for group in groups if not group.published])
        manifest = self._manifest(groups)
        _write_atomically(self.fs, posixpath.join(self.root, MANIFEST_NAME), json.dumps(manifest, indent=1).encode())
        logger.info("committed %d part file(s) to %s", len(manifest["files"]), redact(self.location))
        self._clean_up(set(manifest["files"]))
        processed = sum(len(group.files) for group in self.todo)
        return CommitReport(
            files=len(manifest["files"]),
            rows=manifest["rows"],
            input_files=self.input_files,
            processed_files=processed,
            committed_files=self.input_files - processed,
        )

    def _publish(self, groups: Sequence[DoneGroup]) -> None:
        """Move parts from their attempt's staging folder to the top of the output; a part moved by an earlier,
        interrupted commit is left where it is."""
        moves = [
            (posixpath.join(self.root, STAGING_DIR, group.attempt, name), posixpath.join(self.root, name))
            for group in groups
            for name, _ in group.parts
        ]

        def move(paths: tuple[str, str]) -> None:
            staged, final = paths
            if self.fs.exists(staged):
                self.fs.mv(staged, final)
            elif not self.fs.exists(final):
                raise FileNotFoundError(f"part {redact(self.fs.unstrip_protocol(staged))} is missing; rerun the job")

        self.fs.invalidate_cache()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(move, moves))

    def _manifest(self, groups: Sequence[DoneGroup]) -> dict[str, Any]:
        files = sorted(name for group in groups for name, _ in group.parts)
        return {
            "format": MANIFEST_FORMAT,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "options": self.options,
            "committed": _now(),
            "rows": sum(rows for group in groups for _, rows in group.parts),
            "files": files,
            "attempts": sorted({group.attempt for group in groups if not group.published}),
            "groups": [group.record() for group in groups],
        }

    def _clean_up(self, listed: set[str]) -> None:
        """After the commit: delete top-level part files the manifest does not list (a replaced run's) and every
        attempt's staging folder. A failure here loses nothing: the next commit cleans up again."""
        self.fs.invalidate_cache()
        try:
            for path in self.fs.ls(self.root, detail=False):
                name = posixpath.basename(path)
                if name.endswith(PART_SUFFIX) and name not in listed:
                    self.fs.rm_file(path)
            staging = posixpath.join(self.root, STAGING_DIR)
            if self.fs.exists(staging):
                self.fs.rm(staging, recursive=True)
        except OSError as error:
            logger.warning("could not clean up %s after committing it: %s", redact(self.location), redact(error))


# ---------------------------------------------------------------------------------------------------------------------
# Planning: what is already done
# ---------------------------------------------------------------------------------------------------------------------


def plan_commit(
    location: str,
    inputs: Sequence[InputFile],
    *,
    job: str,
    metadata: dict[str, Any],
    incremental: bool = False,
    overwrite: bool = True,
    commit_bytes: int,
    count_rows: Callable[[list[InputFile]], list[InputFile]] | None = None,
    left_out: Iterable[str] = (),
) -> OutputCommit:
    """The commit of a run writing to `location` over `inputs`: which groups earlier attempts (and, with
    `incremental`, the committed output) already hold, and the groups of the other files to process now.
    `count_rows` fills in the row counts of the files to process (input_groups.with_row_counts), so that a nightly
    run reads the footers of the new files only. `left_out` are the paths of input files the run does not process
    (bad files it skips): unlike a file that is gone, such a file's committed rows are not kept."""
    fs, root = fsspec.core.url_to_fs(location)
    fs.invalidate_cache()
    check_output_folder(fs, root, location)
    options = fingerprint(metadata)
    manifest = read_manifest(fs, root)
    committed = _top_level_parts(fs, root)
    if not overwrite and not incremental and (manifest is not None or committed):
        raise FileExistsError(f"output folder {redact(location)} already holds a committed output and overwrite is off")
    current = {file.identity for file in inputs}
    current_paths = {identity[0] for identity in current} | {redact(path) for path in left_out}
    done: list[DoneGroup] = []
    if incremental and manifest is not None:
        done += _unchanged_groups(manifest, options, current, current_paths, location)
    elif incremental and committed:
        raise ValueError(
            f"--incremental: {redact(location)} holds Parquet files but no textbatch manifest ({MANIFEST_NAME}), so "
            "which inputs they came from is unknown; rerun without --incremental"
        )
    committed_attempts = set(manifest.get("attempts", [])) if manifest else set()
    for attempt, groups in _resumable_attempts(fs, root, options[0], committed_attempts):
        reused = 0
        for group in groups:
            identities = {file.identity for file in group.group.files}
            taken = {file.identity for earlier in done for file in earlier.group.files}
            if identities <= current and not identities & taken:
                done.append(group)
                reused += 1
        logger.info("resuming: %d input group(s) of attempt %s are complete", reused, attempt)
    taken = {file.identity for group in done for file in group.group.files}
    pending = [file for file in inputs if file.identity not in taken]
    if count_rows is not None and pending:
        pending = count_rows(pending)
    todo = group_inputs(pending, commit_bytes)
    return OutputCommit(
        location, fs, root, job=job, options=options, todo=todo, done=done, input_files=len(inputs)
    )


def check_output_folder(fs: fsspec.AbstractFileSystem, root: str, location: str) -> None:
    """Refuse an output folder holding anything a job did not write there: a commit deletes the part files it
    replaces, and must never delete someone else's files."""
    if not fs.isdir(root):
        return
    for path in fs.find(root):
        relative = posixpath.relpath(path, root)
        ours = (
            relative == MANIFEST_NAME
            or relative.startswith(STAGING_DIR + "/")
            or ("/" not in relative and relative.endswith(PART_SUFFIX))
        )
        if not ours:
            raise FileExistsError(
                f"output folder {redact(location)} holds other files, e.g. {redact(relative)}; "
                "choose a new or empty folder"
            )


def read_manifest(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any] | None:
    """The committed manifest as a dict ({} for a manifest without textbatch's fields), or None when there is none."""
    path = posixpath.join(root, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    try:
        manifest = json.loads(fs.cat_file(path) or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else {}


def _unchanged_groups(
    manifest: dict, options: tuple[str, dict], current: set, current_paths: set, location: str
) -> list[DoneGroup]:
    """The manifest's groups to keep in an incremental run: those none of whose files changed (a file that is gone
    keeps its output; a file that changed is processed again, with the rest of its group; a file left out as bad is
    at a current path but no current input, so its group's other files are processed again without it)."""
    if not manifest:
        raise ValueError(
            f"--incremental: the manifest of {redact(location)} was not written by this version of textbatch; "
            "rerun without --incremental"
        )
    if manifest.get("fingerprint") != options[0]:
        before = manifest.get("options", {})
        changed = sorted(key for key in set(before) | set(options[1]) if before.get(key) != options[1].get(key))
        details = ", ".join(f"{key}: {before.get(key)!r} -> {options[1].get(key)!r}" for key in changed[:5])
        raise ValueError(
            f"--incremental: {redact(location)} was made with other options ({details}); rerun without "
            "--incremental to recompute it all, or write to a new output"
        )
    kept = []
    for record in manifest.get("groups", []):
        group = InputGroup.from_record(record)
        if all(file.identity in current or file.identity[0] not in current_paths for file in group.files):
            parts = tuple((part["path"], int(part["rows"])) for part in record["parts"])
            kept.append(DoneGroup(group, parts, record.get("attempt", ""), published=True))
    return kept


def _resumable_attempts(
    fs: fsspec.AbstractFileSystem, root: str, options_hash: str, committed: set[str]
) -> list[tuple[str, list[DoneGroup]]]:
    """Uncommitted attempts with these options, newest first, each with the groups its markers show complete."""
    staging = posixpath.join(root, STAGING_DIR)
    if not fs.isdir(staging):
        return []
    found = []
    for folder in fs.ls(staging, detail=False):
        attempt_file = posixpath.join(folder, ATTEMPT_FILE)
        if not fs.exists(attempt_file):
            continue
        try:
            record = json.loads(fs.cat_file(attempt_file))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if record.get("fingerprint") != options_hash or record.get("attempt") in committed:
            continue
        written = _attempt_parts(fs, folder)
        complete = []
        for entry in record.get("groups", []):
            group = InputGroup.from_record(entry)
            parts = tuple(written.get(group.key, ()))
            if sum(rows for _, rows in parts) == group.rows:
                complete.append(DoneGroup(group, parts, record["attempt"]))
        found.append((record.get("started", ""), record["attempt"], complete))
    found.sort(reverse=True)
    return [(attempt, complete) for _, attempt, complete in found]


def _attempt_parts(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, list[tuple[str, int]]]:
    """group key -> [(part name, rows)] from an attempt folder's markers."""
    fs.invalidate_cache()
    parts: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path in fs.find(folder):
        name = posixpath.basename(path)
        if not name.endswith(MARKER_SUFFIX) or name == ATTEMPT_FILE:
            continue
        try:
            marker = json.loads(fs.cat_file(path))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a marker cut short: its part does not count
        parts[marker["group"]].append((marker["part"], int(marker["rows"])))
    return parts


def _top_level_parts(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    if not fs.isdir(root):
        return []
    return [path for path in fs.ls(root, detail=False) if path.endswith(PART_SUFFIX)]


def _write_atomically(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """One object put on an object store (readers see the old or the new object); write-then-rename on a disk."""
    if getattr(fs, "local_file", False):
        # Beside the attempts, so that a crash leaves it where the next commit's clean-up deletes it.
        temporary = posixpath.join(posixpath.dirname(path), STAGING_DIR, f"{MANIFEST_NAME}.{uuid.uuid4().hex}.tmp")
        fs.makedirs(posixpath.dirname(temporary), exist_ok=True)
        fs.pipe_file(temporary, data)
        fs.mv(temporary, path)
    else:
        fs.pipe_file(path, data)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
