"""cluster.yaml passes the checks `ray up` makes before it contacts the cloud, and installs what each node needs.

`ray up` prepares the config (defaults of the provider, setup commands merged), lets the provider fill in what it can
deduce (GCP: TPU resources, after checking the TPU node config), then validates it against Ray's schema. The test runs
that same sequence with Ray's own functions; only the steps that need credentials are left out.
"""

from __future__ import annotations

import copy
import re
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.providers import _get_node_provider_cls
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r'pip install .*"ray\[default\]==(?P<ray>[\d.]+)" "\$HOME/textbatch\[(?P<extras>[a-z0-9,]+)\]"')


def load_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def checked_by_ray(config: dict) -> dict:
    """What `ray up` does with the file before it needs credentials; raises what it would raise."""
    prepared = prepare_config(copy.deepcopy(config))
    provider = _get_node_provider_cls(prepared["provider"])
    prepared = provider.fillout_available_node_types_resources(prepared)
    validate_config(prepared)
    return prepared


def setup_commands(prepared: dict, node_type: str) -> list[str]:
    """The commands `ray up` runs on a node of this type (a type's own list replaces the merged worker list)."""
    if node_type == prepared["head_node_type"]:
        return prepared["head_setup_commands"]
    return prepared["available_node_types"][node_type].get("worker_setup_commands", prepared["worker_setup_commands"])


def installs(commands: list[str]) -> tuple[str, set[str]]:
    """(pinned Ray version, textbatch extras) of the one install command in `commands`."""
    found = [match for command in commands if (match := INSTALL.search(command))]
    assert len(found) == 1, f"expected one install of ray and textbatch in {commands}"
    return found[0]["ray"], set(found[0]["extras"].split(","))


def test_ray_accepts_the_cluster_config():
    prepared = checked_by_ray(load_config())
    types = prepared["available_node_types"]
    # The GCP provider recognised the TPU node and added the pod-head resource the autoscaler schedules on.
    assert types["tpu_v5e"]["resources"]["TPU-v5litepod-8-head"] == 1
    assert prepared["provider"]["type"] == "gcp"


def test_node_types_head_cpu_gpu_and_tpu_workers_with_bounds():
    config = load_config()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert set(head["resources"]) == {"CPU"}, "the head runs the driver and CPU steps, no accelerator"
    gpu = [name for name, spec in types.items() if spec["resources"].get("GPU", 0) > 0]
    tpu = [name for name, spec in types.items() if spec["resources"].get("TPU", 0) > 0]
    assert len(gpu) == 1 and len(tpu) == 1, types.keys()
    gpu_node = types[gpu[0]]["node_config"]
    with_gpus = "guestAccelerators" in gpu_node or gpu_node["machineType"].split("-")[0] in ("g2", "a2", "a3")
    assert with_gpus, "a GPU worker needs attached accelerators or a machine type that comes with GPUs"
    for name in gpu + tpu:
        spec = types[name]
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= config["max_workers"], name
    assert sum(types[name]["min_workers"] for name in gpu + tpu) <= config["max_workers"]


def test_every_node_installs_the_project_with_its_extras():
    prepared = checked_by_ray(load_config())
    extras_known = set(metadata.metadata("textbatch").get_all("Provides-Extra"))
    wanted = {"head_cpu": {"s3", "gcs"}, "gpu_l4": {"cuda", "s3", "gcs"}, "tpu_v5e": {"tpu", "s3", "gcs"}}
    ray_versions = set()
    for node_type, extras in wanted.items():
        ray_version, installed = installs(setup_commands(prepared, node_type))
        assert installed == extras, (node_type, installed)
        assert installed <= extras_known, f"textbatch has no extra {installed - extras_known}"
        ray_versions.add(ray_version)
    assert len(ray_versions) == 1, "every node must run the same Ray"
    # The code reaches the nodes as a file mount of the repository, installed from where it lands.
    assert prepared["file_mounts"]["~/textbatch"] == "."
    assert (REPO / "pyproject.toml").exists() and (REPO / "pipelines" / "embed.py").exists()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda config: config["available_node_types"]["gpu_l4"].update(min_worker=1), jsonschema.ValidationError),
        (
            lambda config: config["available_node_types"]["gpu_l4"]["resources"].update(GPU=0.5),
            jsonschema.ValidationError,
        ),
        (lambda config: config.update(head_node_type="head"), ValueError),
        (
            lambda config: config["available_node_types"]["tpu_v5e"]["node_config"].update(acceleratorType="v5e"),
            ValueError,
        ),
    ],
    ids=["misspelt-key", "fractional-gpu", "unknown-head-type", "malformed-tpu-type"],
)
def test_ray_rejects_broken_variants(change, error):
    """The validation has teeth: small mistakes in the same file are refused."""
    config = load_config()
    change(config)
    with pytest.raises(error):
        checked_by_ray(config)
