"""JAX's persistent compilation cache for the model actors, so that a rerun (a nightly job) does not recompile.

Compiling one padded shape of xlm-roberta-base takes about 4 s on a 2-core CPU, more than the model needs for
thousands of tokens; with the cache a rerun only traces the model (under a second per shape) and loads the program.
Where the cache lives, first match wins:
  1. the `location` a job passes (its `compilation_cache` option): a folder or a URL JAX can write (`gs://...`);
  2. the environment variable TEXTBATCH_COMPILATION_CACHE;
  3. `$XDG_CACHE_HOME/textbatch/jax` (`~/.cache/textbatch/jax`).
"off" (or an empty string) in 1 or 2 turns the cache off. Every program is written, however fast it compiled (JAX's
default keeps only those that took a second or more: on an idle CPU most padded shapes of xlm-roberta-base compile in
less, and a rerun would compile them all again).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "TEXTBATCH_COMPILATION_CACHE"
OFF = ("", "off", "none")


def default_location() -> str | None:
    """The cache folder when a job does not name one: the environment variable, else under the user's cache dir."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value is not None:
        return None if value.strip().lower() in OFF else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "textbatch", "jax")


def enable_compilation_cache(location: str | None = None) -> str | None:
    """Point this process's JAX at the cache (see the module docstring); returns the location used, None when off.

    JAX reads the setting once, at its first compilation: call this before compiling anything. A second call with
    another location keeps the first one and says so.
    """
    import jax

    if location is None:
        location = default_location()
    elif location.strip().lower() in OFF:
        location = None
    if location is None:
        return None
    if "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
        try:
            os.makedirs(location, exist_ok=True)
        except OSError as error:
            logger.warning("compilation cache %s cannot be created (%s); compiling without it", location, error)
            return None
    current = jax.config.jax_compilation_cache_dir
    if current and current != location:
        logger.warning("this process already caches compilations in %s; not switching to %s", current, location)
        return current
    jax.config.update("jax_compilation_cache_dir", location)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    logger.info("JAX compilation cache: %s", location)
    return location
