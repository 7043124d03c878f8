"""Ray: the local pool's work units, run as Ray tasks on a local instance or a cluster.

What lives here: `start_ray` (connect to `address`, or start a quiet local Ray with
`jobs` CPUs, and shut it down afterwards if it was started here) and `RayRunner`, a
`runners.Runner` whose units are Ray tasks named `faultline.<unit>` (the worker's
process title while it runs one).  Ray is imported only here, only when asked for.
Rule kept: only a unit's return value counts.  A task whose worker dies is re-run by
Ray (`MAX_RETRIES`); units are deterministic, so the re-run returns the identical value
and nothing is counted twice or lost.  Exceptions a unit raises are not retried (they
would recur) and reach the caller as the unit's own exception.  Must not be added:
merging or scheduling (`runners.Ordered` and its callers own them), actors, shared state.
Workers import faultline themselves: install it on every node of a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

MAX_RETRIES = 5
INSTALL_HINT = "pip install 'faultline[ray]'"


class RayError(RuntimeError):
    """Ray is missing, unreachable, or lost a unit for good (bad input for the CLI)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _unit(fn: Callable[..., Any], *args: Any) -> Any:
    """A work unit on a Ray worker."""
    return fn(*args)


class RayRunner:
    """Work units as Ray tasks; `width` is the cluster's CPU count."""

    def __init__(self, ray: Any, width: int) -> None:
        self.ray, self.width, self.window = ray, width, 2 * width
        self._task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_unit)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start `fn(*args)` as a task; its ObjectRef."""
        return self._task.options(name=f"faultline.{fn.__name__}").remote(fn, *args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        """Refs that are ready, once at least one is."""
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        return list(ready)

    def result(self, handle: Any) -> Any:
        """The unit's value; its own exception if it raised one."""
        exc = self.ray.exceptions
        try:
            return self.ray.get(handle)
        except exc.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from e
            raise
        except exc.RayError as e:
            raise RayError(f"ray lost a work unit (tried {MAX_RETRIES + 1} times): "
                           f"{type(e).__name__}: {e}") from e

    def cancel(self, handle: Any) -> None:
        """Cancel a task whose value is no longer needed."""
        self.ray.cancel(handle)


@contextmanager
def start_ray(jobs: int, address: str | None = None) -> Iterator[RayRunner]:
    """A RayRunner: on the Ray this process is already connected to, else on the
    cluster at `address` (e.g. "auto", "ray://head:10001"), else on a local Ray with
    `jobs` CPUs and no dashboard.  Ray is shut down afterwards if it was started here."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if address is None:
                ray.init(num_cpus=jobs, include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except Exception as e:
            where = "a local Ray" if address is None else f"Ray at {address}"
            raise RayError(f"cannot start {where}: {type(e).__name__}: {e}") from e
    try:
        cpus = int(ray.cluster_resources().get("CPU", jobs))
        yield RayRunner(ray, max(1, cpus))
    finally:
        if started:
            ray.shutdown()
