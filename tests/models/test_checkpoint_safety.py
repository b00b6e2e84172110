"""Loading a checkpoint never runs code stored in it: a pickle that would call a function is refused, not executed."""

from __future__ import annotations

import pathlib

import pytest

torch = pytest.importorskip("torch")

from textbatch.models.checkpoint import CheckpointError, open_checkpoint
from textbatch.storage import Folder


class Payload:
    """Unpickling this calls Path.touch(target): the stand-in for any code an attacker could run."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (self.target,)


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    target = tmp_path / "pwned"
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2), "x": Payload(target)},
               folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        open_checkpoint(Folder.open(folder))
    assert not target.exists()
