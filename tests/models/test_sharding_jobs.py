"""The jobs' device and weight options: --devices-per-actor, --mesh, --load-in-8bit, --dtype -> Ray resources and
the model actors' from_pretrained arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from textbatch.jobs import common
from textbatch.jobs.cli import add_job_arguments, job_parser, options_from_args
from textbatch.jobs.common import JobOptions, map_model, model_weights
from textbatch.models.sharding import ShardingError, load_options
from textbatch.operators.predict import PredictEmbeddings

TINY_XLMR = common.ASSETS / "xlm-roberta-tiny"


def parse(*argv: str) -> JobOptions:
    parser = job_parser("job.py", None)
    add_job_arguments(parser, JobOptions(), model_help="", max_length_help="")
    return options_from_args(parser, JobOptions, parser.parse_args(list(argv)))


def test_flags_reach_the_options_and_bad_meshes_are_refused(capsys):
    options = parse("--devices-per-actor", "8", "--mesh", "data=2,model=4", "--load-in-8bit", "--dtype", "bfloat16")
    assert (options.devices_per_actor, options.mesh, options.load_in_8bit, options.dtype) == (
        8, "data=2,model=4", True, "bfloat16")
    assert model_weights(options) == {"mesh": "data=2,model=4", "devices_per_actor": 8, "load_in_8bit": True}
    defaults = parse()
    assert (defaults.devices_per_actor, defaults.mesh, defaults.load_in_8bit) == (None, None, False)
    for argv, message in (
        (("--mesh", "rows=2"), "data=N,model=M"),
        (("--devices-per-actor", "8", "--mesh", "data=2,model=2"), "covers 4 devices but devices_per_actor is 8"),
        (("--devices-per-actor", "0"), "devices_per_actor must be at least 1"),
    ):
        with pytest.raises(SystemExit):
            parse(*argv)
        assert message in capsys.readouterr().err


class FakeDataset:
    def map_batches(self, operator, **kwargs):
        self.kwargs = kwargs
        return self


@pytest.mark.parametrize(
    ("cluster", "devices", "want"),
    [
        ({}, 4, {}),  # no Ray, or a CPU cluster: no accelerators to reserve
        ({"GPU": 16}, None, {"num_gpus": 1.0}),
        ({"GPU": 16}, 8, {"num_gpus": 8.0}),
        ({"TPU": 4}, 4, {"resources": {"TPU": 4.0}}),
        ({"TPU": 4}, None, {}),
    ],
)
def test_model_actors_reserve_their_devices(monkeypatch, cluster, devices, want):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: bool(cluster))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8, **cluster})
    options = JobOptions(devices_per_actor=devices, load_in_8bit=True)
    kwargs = map_model(FakeDataset(), PredictEmbeddings, {"model_path": "m"}, options).kwargs
    assert {key: kwargs[key] for key in ("num_gpus", "resources") if key in kwargs} == want
    assert kwargs["fn_constructor_kwargs"] == {"model_path": "m", "weights": model_weights(options)}


def test_load_options_on_this_host():
    assert load_options() == {"dtype": jnp.float32, "load_in_8bit": False}
    options = load_options("bfloat16", mesh="data=1,model=1", devices_per_actor=1, load_in_8bit=True)
    assert options["dtype"] == jnp.bfloat16 and options["param_dtype"] == jnp.bfloat16 and options["load_in_8bit"]
    assert dict(options["mesh"].shape) == {"data": 1, "model": 1}
    too_many = jax.device_count() + 1
    with pytest.raises(ShardingError, match=f"devices_per_actor={too_many} but this actor sees {jax.device_count()}"):
        load_options(devices_per_actor=too_many)


def test_an_int8_embedding_actor_agrees_with_float32():
    rows = [[0, 5, 17, 33, 2], [0, 9, 2], [0, 41, 40, 39, 38, 37, 2]]
    full = PredictEmbeddings(str(TINY_XLMR), batch_tokens=64, compilation_cache="off")
    int8 = PredictEmbeddings(str(TINY_XLMR), batch_tokens=64, compilation_cache="off",
                             weights={"load_in_8bit": True, "mesh": "data=1,model=1", "devices_per_actor": 1})
    ours, theirs = full.embed_ids(rows)[0], int8.embed_ids(rows)[0]
    similarity = np.sum(ours * theirs, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1))
    assert similarity.min() >= 0.999


def test_an_int8_classifier_scores_packed_rows_as_padded_ones():
    """The head applied to packed rows' own <s> states (classify_states) reads int8 kernels as the full call does."""
    from textbatch.operators.sequence_classify import ClassifySequences

    rows = [np.array(row) for row in ([0, 5, 17, 33, 2], [0, 9, 2], [0, 41, 40, 39, 38, 37, 2])]
    weights = {"load_in_8bit": True, "mesh": "data=1,model=1", "devices_per_actor": 1}
    folder = str(common.ASSETS / "xlm-roberta-tiny-classifier")
    packed, padded = (
        ClassifySequences(folder, batch_tokens=64, compilation_cache="off", weights=weights, pack_length=length)
        for length in (128, 0)
    )
    scores, _ = packed.scores_of(rows)
    np.testing.assert_allclose(scores, padded.scores_of(rows)[0], atol=1e-5)
    assert packed.model_calls.pack_length > 0 and all(key[0] == "packed" for key in packed.model_calls.programs.programs)
