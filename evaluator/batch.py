"""``edl score-dir``: score every submission in a folder, one child process each, one after another.

A child per submission means a crash, hang or out-of-memory costs only that submission: the
failure is recorded as its result and the batch goes on. Energy windows never overlap because the
children run in turn. Results are written atomically, so an interrupted batch resumes cleanly:
a submission already scored with the same model, data and settings is skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator import __version__
from evaluator.data import resolve
from evaluator.errors import EdlError
from evaluator.fileio import atomic_write_json, sha256_file
from evaluator.score import RESULT_NAME, SCHEMA_VERSION, ScoreOptions, preflight_out_dir
from evaluator.verify import seal

DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_MAX_MEMORY_GB = 16.0


@dataclass(frozen=True)
class Submission:
    name: str
    model: Path | None  # None when the entry is not a usable submission
    problem: str = ""


def discover(directory: Path) -> list[Submission]:
    """Each ``*.onnx`` file in ``directory``, and each sub-folder holding exactly one ``.onnx``."""
    if not directory.is_dir():
        raise EdlError(f"{directory}: not a folder of submissions")
    found: list[Submission] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".onnx":
            found.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            models = sorted(entry.glob("*.onnx"))
            if len(models) == 1:
                found.append(Submission(entry.name, models[0]))
            else:
                found.append(Submission(entry.name, None, f"the folder holds {len(models)} .onnx files; it needs one"))
    names = [s.name for s in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise EdlError(f"{directory}: several submissions are named {sorted(duplicates)} (a file and a folder?)")
    return found


@dataclass(frozen=True)
class ChildLimits:
    """Operating-system limits on each scoring child, a backstop behind --timeout and the checks."""

    cpu_seconds: int | None  # RLIMIT_CPU: CPU time over all threads
    address_space_bytes: int | None  # RLIMIT_AS: only for CPU runs (CUDA maps huge virtual ranges)

    def apply(self) -> None:
        """Runs in the child before exec."""
        try:  # SIGKILL the child when the batch dies (kill -9 too): no orphan measures beside a resumed batch
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # not Linux: the timeout and the process group still bound the child
        if self.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 10))
        if self.address_space_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space_bytes, self.address_space_bytes))


def child_limits(options: ScoreOptions, timeout_s: float, max_memory_gb: float | None) -> ChildLimits:
    from evaluator.runtime import cuda_unavailable_reason

    uses_cuda = options.provider == "cuda" or (options.provider == "auto" and cuda_unavailable_reason() is None)
    cpu_seconds = int(timeout_s * (os.cpu_count() or 1) * 1.5) + 60
    memory = None if uses_cuda or not max_memory_gb else int(max_memory_gb * (1 << 30))
    return ChildLimits(cpu_seconds, memory)


def child_arguments(model: Path, out_dir: Path, options: ScoreOptions) -> list[str]:
    """The ``edl score`` command line that reproduces ``options`` in a child process."""
    args = [sys.executable, "-m", "evaluator", "score", str(model), "--out", str(out_dir), "--json",
            "--provider", options.provider, "--gpu", str(options.gpu), "--passes", str(options.passes),
            "--warmup", str(options.warmup_passes), "--idle-seconds", str(options.idle_seconds),
            "--sample-ms", str(options.sample_ms), "--cooldown", str(options.cooldown_seconds)]
    if options.data is not None:
        args += ["--data", str(options.data)]
    if options.batch_size is not None:
        args += ["--batch-size", str(options.batch_size)]
    if options.target_temp_c is not None:
        args += ["--target-temp", str(options.target_temp_c)]
    args += ["--cudnn-search", options.cudnn_search, "--prefer-nhwc" if options.prefer_nhwc else "--no-prefer-nhwc",
             "--cuda-graph" if options.cuda_graph else "--no-cuda-graph",
             "--overlap-batches" if options.overlap_batches else "--no-overlap-batches",
             "--tf32" if options.tf32 else "--no-tf32"]
    limits = options.limits
    args += ["--max-file-bytes", str(limits.max_file_bytes), "--max-initializer-bytes",
             str(limits.max_initializer_bytes), "--max-nodes", str(limits.max_nodes)]
    if options.tune:
        args += ["--tune", "--tune-seconds", str(options.tune_seconds)]
    if options.exclusive:
        args.append("--exclusive")
    if not options.meter:
        args.append("--no-meter")
    if not options.plot:
        args.append("--no-plot")
    return args


def _existing(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or (never by us) corrupt: score again


def _failure_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {"SIGKILL": " (killed: out of memory?)", "SIGXCPU": " (its CPU-time limit ran out)"}.get(name, "")
        return f"the scoring process died with {name}{hint}"
    errors = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
    if errors:
        return "; ".join(errors)
    tail = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"the scoring process exited with code {returncode}" + (f": {tail[-1]}" if tail else "")


def failure_document(submission: Submission, reason: str, fingerprint: str, options: ScoreOptions,
                     seconds: float, timeout_s: float | None = None) -> dict[str, object]:
    model: dict[str, object] = {"path": str(submission.model) if submission.model else submission.name}
    if submission.model is not None and submission.model.is_file():
        model |= {"sha256": sha256_file(submission.model), "bytes": submission.model.stat().st_size}
    return seal({
        "schema_version": SCHEMA_VERSION,
        "kind": "edl-result",
        "status": "failed",
        "reason": reason,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model,
        "data": {"fingerprint": fingerprint},
        "settings": options.settings(),
        "elapsed_s": seconds,
        "timeout_s": timeout_s,
        "versions": {"evaluator": __version__},
    })


def _limits_grew(previous: dict, timeout_s: float) -> bool:
    """A time-out under a shorter --timeout than now deserves another try; any other result stands."""
    return previous.get("status") == "failed" and (previous.get("timeout_s") or timeout_s) < timeout_s


ProgressHook = Callable[[str, int, int], None]
"""Called with (submission name, index done, total)."""


def score_directory(directory: Path, out_root: Path, options: ScoreOptions, timeout_s: float = DEFAULT_TIMEOUT_S,
                    force: bool = False, progress: ProgressHook | None = None,
                    max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB) -> dict[str, object]:
    """Score every submission in ``directory``; returns the batch summary (also written as batch.json)."""
    submissions = discover(directory)
    preflight_out_dir(out_root)
    dataset = resolve(options.data, allow_download=options.allow_download)
    settings = options.settings()
    limits = child_limits(options, timeout_s, max_memory_gb)
    outcomes: list[dict[str, object]] = []
    for index, submission in enumerate(submissions):
        if progress:
            progress(submission.name, index, len(submissions))
        out_dir = out_root / submission.name
        result_path = out_dir / RESULT_NAME
        started = time.monotonic()
        if submission.model is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(result_path, failure_document(submission, submission.problem, dataset.fingerprint,
                                                            options, 0.0))
            outcomes.append({"name": submission.name, "outcome": "failed", "reason": submission.problem})
            continue
        previous = None if force else _existing(result_path)
        if (previous and previous.get("model", {}).get("sha256") == sha256_file(submission.model)
                and previous.get("data", {}).get("fingerprint") == dataset.fingerprint
                and previous.get("settings") == settings
                and not _limits_grew(previous, timeout_s)):
            outcomes.append({"name": submission.name, "outcome": "skipped", "status": previous.get("status")})
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        result_path.unlink(missing_ok=True)  # a stale result must never stand for this run
        args = child_arguments(submission.model, out_dir, options)
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
                                 preexec_fn=limits.apply)
        timed_out = False
        try:
            _, stderr = child.communicate(timeout=timeout_s)
            reason = None if child.returncode == 0 else _failure_reason(child.returncode, stderr)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            reason = f"timed out after {timeout_s:g} s (--timeout); the scoring process was killed"
        elapsed = time.monotonic() - started
        if reason is None and _existing(result_path) is None:
            reason = "the scoring process exited cleanly but wrote no result"
        if reason is not None:
            atomic_write_json(result_path, failure_document(submission, reason, dataset.fingerprint, options, elapsed,
                                                            timeout_s if timed_out else None))
            outcomes.append({"name": submission.name, "outcome": "failed", "reason": reason})
        else:
            outcomes.append({"name": submission.name, "outcome": "scored", "seconds": elapsed})
    if progress:
        progress("", len(submissions), len(submissions))
    summary = {
        "kind": "edl-batch",
        "directory": str(directory),
        "data": dataset.describe(),
        "settings": settings,
        "limits": {"timeout_s": timeout_s, "cpu_seconds": limits.cpu_seconds,
                   "address_space_bytes": limits.address_space_bytes},
        "counts": {k: sum(1 for o in outcomes if o["outcome"] == k) for k in ("scored", "failed", "skipped")},
        "submissions": outcomes,
    }
    atomic_write_json(out_root / "batch.json", summary)
    return summary
