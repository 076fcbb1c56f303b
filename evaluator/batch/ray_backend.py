"""The Ray backend: score-dir's children on the hosts of a Ray cluster, one scoring per host at a time.

Each host offers the custom resource ``edl-host: 1`` (and ``edl-gpu-<model>: 1`` for its GPU kind),
and every scoring task asks for the whole ``edl-host``: Ray never runs two on one host, because
CPU energy is the whole host's. On the host, the task runs the very child process the local
backend runs (same limits, same --timeout inside the child: Ray itself has no per-task timeout),
which also takes the host's OS lock, so a manual ``edl score`` never overlaps a cluster's. The
submission's bytes and the test set's travel in Ray's object store (no shared file system), the
data fingerprint is checked on arrival, and the result files come back to the driver, which writes
them. A task whose host died is run again on another host, up to ``HOST_RETRIES`` times.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.batch.child import ChildOutcome, Job
from evaluator.batch.limits import child_limits
from evaluator.batch.local import STOPPED, Done, run_child
from evaluator.data.dataset import Dataset
from evaluator.data.formats import npz_bytes
from evaluator.errors import EdlError, StoppedError
from evaluator.events import EventSink, RunPlaced, silent
from evaluator.fileio import atomic_write_bytes
from evaluator.report.result import RUN_RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME
from evaluator.typedjson import from_json, to_json

HOST_RESOURCE = "edl-host"
GPU_KIND_PREFIX = "edl-gpu-"
HOST_LABEL = "edl.host"  # a node label naming the host (hosts simulated on one machine share a hostname)
HOST_RETRIES = 2
RETURNED = tuple(name.format("*") for name in (RUN_RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME))


def ray_module() -> Any:
    """Ray, imported on first use; a clear message where the [ray] extra is missing."""
    try:
        import ray
    except ImportError as exc:
        raise EdlError(f"ray is not installed ({exc}); install the [ray] extra: pip install 'edl-evaluator[ray]' "
                       "from the package index, or pip install -e '.[ray]' in a checkout of edl") from None
    return ray


def kind_slug(model: str) -> str:
    """A GPU model name as a resource name: ``NVIDIA H200`` -> ``nvidia-h200``."""
    return "-".join("".join(c if c.isalnum() else " " for c in model.lower()).split()) or "unknown"


def gpu_kinds(resources: dict[str, float]) -> list[str]:
    """The GPU kinds a cluster's hosts advertise (``edl-gpu-<kind>`` resources)."""
    return sorted(name.removeprefix(GPU_KIND_PREFIX) for name in resources if name.startswith(GPU_KIND_PREFIX))


@dataclass(frozen=True)
class Task:
    """What travels to a host: the job (with the driver's paths), and how the child is bounded there."""

    job: Job
    model_name: str
    timeout_s: float
    max_memory_gb: float


def host_name() -> str:
    """This host as the batch reports it: its edl.host label, else its hostname."""
    try:
        labels = ray_module().get_runtime_context().get_node_labels()
    except Exception:  # noqa: BLE001 - outside a Ray worker: no labels
        labels = {}
    label = labels.get(HOST_LABEL)
    label = label[0] if isinstance(label, list) and label else label
    return str(label) if label else socket.gethostname() or platform.node()


def score_on_host(task_json: dict[str, Any], model: bytes, data: bytes, starts: Any) -> dict[str, Any]:
    """Runs on a host: the submission and data written to a private folder, the child run, the files returned."""
    task = from_json(Task, task_json, "task")
    host = host_name()
    if starts is not None:
        try:  # only a progress event: never let it hold the scoring up
            starts.put((task.job.name, task.job.plan.first_run, host), timeout=5)
        except Exception:  # noqa: BLE001 - the queue lives with the driver; a lost line is harmless
            pass
    with tempfile.TemporaryDirectory(prefix="edl-ray-") as folder:
        root = Path(folder)
        (root / "out").mkdir()
        (root / task.model_name).write_bytes(model)
        (root / "data.npz").write_bytes(data)
        job = dataclasses.replace(task.job, model=root / task.model_name, out_dir=root / "out",
                                  config=dataclasses.replace(task.job.config, data=root / "data.npz"))
        limits = child_limits(job.config.runtime.provider, task.timeout_s, task.max_memory_gb)
        outcome = run_child(job, task.timeout_s, limits)
        files = {path.name: path.read_bytes() for pattern in RETURNED for path in (root / "out").glob(pattern)}
    return {"outcome": to_json(dataclasses.replace(outcome, host=host)), "files": files}


@dataclass
class _InFlight:
    job: Job
    attempts: int
    submitted: float = 0.0  # monotonic: a run that fails on its host took this long, not the time to collect it


class RayBackend:
    """Jobs on a Ray cluster: as many at once as hosts free, one per host, results written by the driver."""

    def __init__(self, address: str | None, dataset: Dataset, timeout_s: float, max_memory_gb: float,
                 sink: EventSink = silent, stop: threading.Event | None = None) -> None:
        self.stop = stop
        self.ray = ray_module()
        self.connected_here = not self.ray.is_initialized()
        if self.connected_here:
            self.ray.init(**self._init_arguments(address))
        self.timeout_s, self.max_memory_gb, self.sink = timeout_s, max_memory_gb, sink
        self.data_ref = self.ray.put(npz_bytes(dataset.images, dataset.labels))
        self.lost: list[str] = []  # runs whose host died under them, and what became of them
        self._models: dict[Path, Any] = {}
        self._remote = self.ray.remote(max_retries=0)(score_on_host)

    @staticmethod
    def _init_arguments(address: str | None) -> dict[str, Any]:
        if address is not None:
            return {"address": address, "include_dashboard": False, "log_to_driver": False}
        from evaluator.scoring.cooldown import GpuWatch  # a local instance: this machine is the one host

        board = GpuWatch(0).identity
        resources = {HOST_RESOURCE: 1.0}
        if board is not None and board.name:
            resources[GPU_KIND_PREFIX + kind_slug(board.name)] = 1.0
        return {"address": "local", "resources": resources, "include_dashboard": False, "log_to_driver": False,
                "object_store_memory": 256 << 20, "num_cpus": os.cpu_count() or 1}

    def kinds(self) -> list[str]:
        return gpu_kinds(self.ray.cluster_resources())

    def hosts(self) -> int:
        return int(self.ray.cluster_resources().get(HOST_RESOURCE, 0))

    def _model_ref(self, path: Path) -> Any:
        if path not in self._models:
            self._models[path] = self.ray.put(path.read_bytes())
        return self._models[path]

    def _submit(self, flight: _InFlight, starts: Any) -> Any:
        job = flight.job
        flight.submitted = time.monotonic()
        resources = {HOST_RESOURCE: 1.0} | ({GPU_KIND_PREFIX + job.gpu_kind: 0.001} if job.gpu_kind else {})
        task = Task(job, job.model.name, self.timeout_s, self.max_memory_gb)
        return self._remote.options(resources=resources).remote(to_json(task), self._model_ref(job.model),
                                                                 self.data_ref, starts)

    def run(self, jobs: Iterable[Job], done: Done) -> None:
        """Keep every host busy with the next jobs in order; a job whose host died runs again elsewhere."""
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()  # the queue lives and dies with the driver's host
        starts = Queue(actor_options={"num_cpus": 0,
                                      "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)})
        pending: Iterator[Job] = iter(jobs)
        flying: dict[Any, _InFlight] = {}
        retry: list[_InFlight] = []

        def next_flight() -> _InFlight | None:
            if retry:
                return retry.pop(0)
            job = next(pending, None)
            return None if job is None else _InFlight(job, 0)

        while True:
            while len(flying) < max(self.hosts(), 1) and (flight := next_flight()) is not None:
                flying[self._submit(flight, starts)] = flight
            if not flying:
                break
            ready, _ = self.ray.wait(list(flying), num_returns=1, timeout=0.5)
            self._announce_starts(starts)
            for ref in ready:  # collected before a stop is obeyed: a finished run is whole, and kept
                flight = flying.pop(ref)
                outcome = self._collect(ref, flight, retry)
                if outcome is not None:
                    done(flight.job, outcome)
            if self.stop is not None and self.stop.is_set():
                for ref in flying:  # force: the task's process dies, and its scoring child with it (PDEATHSIG)
                    self.ray.cancel(ref, force=True)
                raise StoppedError(STOPPED)
        self._announce_starts(starts)

    def _announce_starts(self, starts: Any) -> None:
        """A ``RunPlaced`` for each run a host said it started (its scoring's own events stay on the host)."""
        while True:
            try:
                name, run, host = starts.get_nowait()
            except (queue.Empty, Exception):  # noqa: BLE001 - ray.util.queue.Empty derives from queue.Empty
                return
            self.sink(RunPlaced(name, run, host))

    def _collect(self, ref: Any, flight: _InFlight, retry: list[_InFlight]) -> ChildOutcome | None:
        """The job's outcome with its files written, or None when it was queued again after its host died."""
        try:
            reply = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # our own code failed on the host
            return ChildOutcome(f"the scoring task failed on its host: {exc.cause!r}"[:400], False,
                                time.monotonic() - flight.submitted)
        except self.ray.exceptions.RayError as exc:  # the host (or its worker) died
            job = flight.job
            kind_left = job.gpu_kind is None or job.gpu_kind in self.kinds()
            self.lost.append(f"{job.out_dir.name} run {job.plan.first_run}: {type(exc).__name__}")
            if flight.attempts < HOST_RETRIES and kind_left:
                retry.append(_InFlight(job, flight.attempts + 1))
                return None
            why = "no host of its GPU kind is left" if not kind_left else "not retried again"
            return ChildOutcome(f"the host died while scoring it, {flight.attempts + 1} time(s) "
                                f"({type(exc).__name__}); {why}", False, time.monotonic() - flight.submitted)
        flight.job.out_dir.mkdir(parents=True, exist_ok=True)
        for name, content in reply["files"].items():
            atomic_write_bytes(flight.job.out_dir / name, content)
        return from_json(ChildOutcome, reply["outcome"], "outcome")

    def close(self) -> None:
        """Leave the cluster this backend joined (and stop the local instance it started)."""
        if self.connected_here and self.ray.is_initialized():
            self.ray.shutdown()
