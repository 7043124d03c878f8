"""Ray: the local pool's work units, run as Ray tasks on a local instance or a cluster.

What lives here: `start_ray` (connect to `address`, or start a quiet local Ray with
`jobs` CPUs, and shut it down afterwards if it was started here) and `RayRunner`, a
`runners.Runner` whose units are Ray tasks named `faultline.<unit>` (the worker's
process title while it runs one).  Ray is imported only here, only when asked for.
Rule kept: only a unit's return value counts.  A task whose worker dies is re-run by
Ray (`MAX_RETRIES`); units are deterministic, so the re-run returns the identical value
and nothing is counted twice or lost.  Live progress (check.running.live) comes back
through a Ray queue, each message tagged with the attempt that sent it; once a unit
returns, what its failed attempts reported is taken back, so the progress a caller sees
adds up as if every unit had run once.  Exceptions a unit raises are not retried (they
would recur) and reach the caller as the unit's own exception.  Must not be added:
merging or scheduling (`runners.Ordered` and its callers own them), actors, shared state.
Workers import faultline themselves: install it on every node of a cluster.
A cluster address is probed before ray.init (`_probe`): ray.init retries an address
nothing answers at for many minutes, so an unreachable one must fail here, at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from faultline.check.running import live

MAX_RETRIES = 5
INSTALL_HINT = "pip install 'faultline[ray]'"
PROBE_SECONDS = 5.0      # each probe's timeout (Ray's GCS client may take ~10 s more)


class RayError(RuntimeError):
    """Ray is missing, unreachable, or lost a unit for good (bad input for the CLI)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _unit(queue: Any, key: str, fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """A work unit on a Ray worker: its value, and the attempt that computed it (the
    tag of its progress messages)."""
    attempt = f"{key}/{uuid.uuid4().hex}"
    with live.batched(attempt, queue.put):
        return attempt, fn(*args)


class RayRunner:
    """Work units as Ray tasks; `width` is the cluster's CPU count.  Live progress
    goes to `listener` when polled."""

    def __init__(self, ray: Any, width: int, listener: live.Listener | None = None) -> None:
        from ray.util.queue import Queue
        self.ray, self.width, self.window = ray, width, 2 * width
        self.listener = listener
        self._task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_unit)
        self._queue = Queue(actor_options={"num_cpus": 0})
        self._keys = itertools.count()
        self._key: dict[Any, str] = {}                  # handle -> unit key
        self._heard: dict[str, dict[str, int]] = {}     # unit key -> attempt -> executions
        self._settled: dict[str, dict[str, int]] = {}   # the same, of a unit just over

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start `fn(*args)` as a task; its ObjectRef."""
        key = str(next(self._keys))
        ref = self._task.options(name=f"faultline.{fn.__name__}").remote(
            self._queue, key, fn, *args)
        self._key[ref] = key
        self._heard[key] = {}
        return ref

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Refs that are ready, once at least one is (or `timeout` passed)."""
        ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        return list(ready)

    def result(self, handle: Any) -> Any:
        """The unit's value; its own exception if it raised one."""
        exc = self.ray.exceptions
        key = self._key.pop(handle, "")
        try:
            attempt, value = self.ray.get(handle)
        except exc.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from e
            raise
        except exc.RayError as e:
            raise RayError(f"ray lost a work unit (tried {MAX_RETRIES + 1} times): "
                           f"{type(e).__name__}: {e}") from e
        finally:
            self._forget(key)
        self._settle(key, attempt)
        return value

    def cancel(self, handle: Any) -> None:
        """Cancel a task whose value is no longer needed."""
        self.ray.cancel(handle)
        self._forget(self._key.pop(handle, ""))

    def poll(self) -> None:
        """Hand the units' progress messages so far to the listener."""
        n = self._queue.qsize()
        for message in self._queue.get_nowait_batch(n) if n else ():
            key, attempt = message[0].split("/", 1)
            heard = self._heard.get(key)
            if heard is None:          # a unit already settled or cancelled: too late
                continue
            heard[attempt] = heard.get(attempt, 0) + message[1]
            if self.listener is not None:
                live.deliver(self.listener, (key, *message[1:]))

    def close(self) -> None:
        """Stop the progress queue's actor."""
        self.ray.kill(self._queue.actor)

    def _forget(self, key: str) -> None:
        """The unit `key` is over: later messages of its attempts are ignored."""
        self._settled[key] = self._heard.pop(key, {})
        if self.listener is not None:
            self.listener.unit(key, "")

    def _settle(self, key: str, winner: str) -> None:
        """Take back what the unit's failed attempts reported (Ray re-ran it)."""
        lost = sum(n for a, n in self._settled.pop(key, {}).items()
                   if a != winner.split("/", 1)[1])
        if lost and self.listener is not None:
            self.listener.executions(-lost)


@contextmanager
def start_ray(jobs: int, address: str | None = None,
              listener: live.Listener | None = None) -> Iterator[RayRunner]:
    """A RayRunner: on the Ray this process is already connected to, else on the
    cluster at `address` (e.g. "auto", "ray://head:10001"), else on a local Ray with
    `jobs` CPUs and no dashboard.  Ray is shut down afterwards if it was started here.
    Units' live progress reaches `listener` as they run."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is not None:
            _probe(ray, address)
        try:
            if address is None:
                # "local", not None: None would join RAY_ADDRESS or the last `ray start`.
                ray.init(address="local", num_cpus=jobs, include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except Exception as e:
            where = "a local Ray" if address is None else f"Ray at {address}"
            raise RayError(f"cannot start {where}: {type(e).__name__}: {e}") from e
    try:
        cpus = int(ray.cluster_resources().get("CPU", jobs))
        runner = RayRunner(ray, max(1, cpus), listener)
        try:
            yield runner
        finally:
            runner.close()
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------- probing an address

def _dialled(ray: Any, address: str) -> tuple[str, int, bool] | None:
    """Where ray.init(address=address) connects: host, port, and whether that is a Ray
    Client server (ray://) rather than a GCS.  None: Ray finds no cluster or cannot
    parse the address, which ray.init itself reports at once."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or address      # as ray.init reads it
    if "://" in address:
        scheme, _, inner = address.partition("://")
        client = True
        if scheme != "ray":
            return None
    else:
        client = False
        try:
            # Ray's own (internal) resolution: "auto" -> the running cluster,
            # localhost -> the node's IP.
            inner = ray._private.services.canonicalize_bootstrap_address(address)
        except AttributeError:         # a Ray without it: dial the address as given
            inner = address
        except Exception:              # no cluster found, a malformed address
            return None
        if inner is None:
            return None
    host, _, port = inner.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port), client


def _probe(ray: Any, address: str) -> None:
    """Raise RayError unless something at `address` answers as Ray: a TCP connect, then
    (for a GCS) Ray's own GCS client, each with a short timeout."""
    target = _dialled(ray, address)
    if target is None:
        return
    host, port, client = target
    where = f"{host}:{port}"
    shown = address if address.endswith(where) else f"{address} (dialled as {where})"
    hint = ("check that the cluster is up (`ray status` on its head) and "
            + ("runs the Ray Client server there (port 10001 by default)" if client else
               "that ADDRESS is its GCS address, HOST:6379 by default, or ray://HOST:10001 "
               "for Ray Client"))
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise RayError(f"cannot reach Ray at {shown}: {_no_connection(e, host)}; {hint}"
                       ) from None
    # A port that accepts connections (another service, a proxy) can still hang ray.init;
    # Ray's internal GCS client, if this Ray has it, asks for the cluster ID as init does.
    gcs = getattr(getattr(ray, "_raylet", None), "InnerGcsClient", None)
    if client or gcs is None:
        return
    try:
        gcs.standalone(where, None, int(PROBE_SECONDS * 1000))
    except ray.exceptions.RpcError as e:
        raise RayError(f"cannot reach Ray at {shown}: something accepts connections there "
                       f"but does not answer as a Ray GCS ({e}); {hint}") from None
    except ray.exceptions.RayError as e:        # e.g. AuthenticationError, which says what to do
        raise RayError(f"cannot connect to Ray at {shown}: {type(e).__name__}: {e}") from None


def _no_connection(e: OSError, host: str) -> str:
    """Why a TCP connect failed, in words."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return f"no answer within {PROBE_SECONDS:g} s"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host {host} ({e.strerror})"
    return f"cannot connect ({type(e).__name__}: {e})"
