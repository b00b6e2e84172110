"""Where the persistent compilation cache lives, and that a second process running the model step loads its
programs from it instead of compiling them (what a nightly rerun relies on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from textbatch.jobs.embed import TINY_MODEL
from textbatch.operators.compilation_cache import ENVIRONMENT_VARIABLE, default_location


def test_the_location_comes_from_the_environment_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(tmp_path / "here"))
    assert default_location() == str(tmp_path / "here")
    for off in ("off", "", "None"):
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, off)
        assert default_location() is None
    monkeypatch.delenv(ENVIRONMENT_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_location() == os.path.join(str(tmp_path / "xdg"), "textbatch", "jax")


# One process of the model step: embed rows of two padded shapes, report JAX's cache events and compile seconds.
RUN = textwrap.dedent(
    """
    import json, sys
    import jax
    from jax import monitoring
    events = []
    monitoring.register_event_listener(lambda name, **kw: events.append(name))
    from textbatch.operators.predict import PredictEmbeddings
    step = PredictEmbeddings(sys.argv[1], batch_tokens=32, compilation_cache=sys.argv[2], shape_cost=None,
                             pack_length=0)
    step.embed_ids([[0, 5, 6, 2], [0] + list(range(3, 30)) + [2]])
    print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                      "misses": events.count("/jax/compilation_cache/cache_misses"),
                      "shapes": len(step.programs.programs), "cache": step.compilation_cache}))
    """
)


def run_step(cache: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(TINY_MODEL), cache], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_rerun_loads_its_programs_from_the_cache(tmp_path):
    cache = tmp_path / "jax-cache"
    cold = run_step(str(cache))
    assert cold["cache"] == str(cache) and cold["shapes"] == 2
    assert cold["misses"] >= 2 and cold["hits"] == 0 and any(cache.iterdir())
    warm = run_step(str(cache))
    assert warm["shapes"] == 2 and warm["hits"] >= 2 and warm["misses"] == 0  # nothing compiled again
    off = run_step("off")
    assert off["cache"] is None and off["hits"] == 0
