"""``edl score --tune``: the same bounded search for every submission over the allowed runtime settings.

A coordinate search: starting from the pinned defaults, one setting at a time (batch size from a
fixed set when the graph leaves it free; on CUDA then NHWC, CUDA graphs, cuDNN algorithm search),
every value is measured with the others at their best so far, and the best value is kept. That is
at most 7 candidates instead of the 32 of a full grid, in a fixed order, so every submission gets
the same search. Each candidate runs its warm-up (and graph capture), then passes for a short
window on the same sampler as the final measurement; the lowest energy per image wins (time per
image when no meter is available, and the record says which). The winner is then measured in full.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluator.config import CUDNN_SEARCHES, RuntimeConfig, ScoreConfig
from evaluator.contract.spec import Contract
from evaluator.data.dataset import Dataset
from evaluator.errors import MeterError, SubmissionError
from evaluator.power.analysis import TOTAL_DOMAINS, Window, domain_reading, load_samples
from evaluator.report.result import Tuning, TuningCandidate
from evaluator.runtime.providers import uses_gpu
from evaluator.runtime.runner import make_batches, prime_runner
from evaluator.runtime.session import create_session
from evaluator.scoring.progress import Progress

BATCH_SIZES = (250, 500, 1000, 2000)
BY_ENERGY, BY_TIME = "joules per image", "seconds per image (no meter)"
SEARCHED_CUDNN = ("EXHAUSTIVE", "HEURISTIC")
Dimensions = list[tuple[str, tuple[object, ...]]]


def search_space(contract: Contract, config: RuntimeConfig) -> tuple[RuntimeConfig, Dimensions]:
    """The start and the settings searched, in order: identical for every submission of a contract."""
    start_batch = contract.batch_size(config.batch_size)[0]
    on_gpu = uses_gpu(config.provider)
    start = dataclasses.replace(config, batch_size=start_batch, cuda_graph=config.cuda_graph and on_gpu)
    batches = tuple(sorted({*BATCH_SIZES, start_batch})) if contract.batch_is_free else (start_batch,)
    dimensions: Dimensions = [("batch_size", batches)]
    if on_gpu:
        cudnn = tuple(dict.fromkeys((config.cudnn_search, *SEARCHED_CUDNN)))
        assert set(cudnn) <= set(CUDNN_SEARCHES)
        dimensions += [("prefer_nhwc", (True, False)), ("cuda_graph", (True, False)), ("cudnn_search", cudnn)]
    return start, dimensions


def coordinate_search(start: RuntimeConfig, dimensions: Dimensions,
                      cost: Callable[[RuntimeConfig], float]) -> RuntimeConfig:
    """Best value of each setting in turn, the others held at their best so far; one cost call per candidate."""
    costs: dict[RuntimeConfig, float] = {}
    best = start
    for name, values in dimensions:
        tried = [dataclasses.replace(best, **typing.cast(dict[str, Any], {name: value})) for value in values]
        for candidate in tried:
            if candidate not in costs:
                costs[candidate] = cost(candidate)
        best = min(tried, key=costs.__getitem__)  # a tie keeps the value listed first
    return best


def _window_joules(samples_path: Path | None, window: Window) -> float | None:
    if samples_path is None:
        return None
    try:
        samples = load_samples(samples_path)
        values = [domain_reading(samples, domain, window).joules for domain in TOTAL_DOMAINS]
    except MeterError:
        return None
    counted = [v for v in values if v is not None]
    return sum(counted) if counted else None


def _candidate(config: RuntimeConfig) -> TuningCandidate:
    assert config.batch_size is not None
    return TuningCandidate(config.batch_size, config.prefer_nhwc, config.cuda_graph, config.cudnn_search)


class _Trial:
    """Measures one candidate: a fresh session and resident batches, a warm-up, then a short window."""

    def __init__(self, model_path: Path, contract: Contract, dataset: Dataset, config: ScoreConfig,
                 samples_path: Path | None, progress: Progress) -> None:
        self.model_path, self.contract, self.dataset, self.config = model_path, contract, dataset, config
        self.samples_path, self.progress = samples_path, progress
        self.lag_s = max(0.05, 3 * config.meter.sample_period_s)  # the sampler has recorded past the window
        self.rows: dict[RuntimeConfig, TuningCandidate] = {}

    def measure(self, candidate: RuntimeConfig) -> TuningCandidate:
        row = _candidate(candidate)
        self.progress.phase(f"tune b{row.batch_size}{' nhwc' if row.prefer_nhwc else ''}"
                            f"{' graph' if row.cuda_graph else ''} {row.cudnn_search.lower()}")
        try:
            session, info = create_session(self.model_path, candidate)
            batches, _ = make_batches(self.dataset.images, self.contract, row.batch_size)
            runner = prime_runner(self.model_path, session, info, self.contract, batches, candidate,
                                  self.dataset.count)
            row.cuda_graph_ran = info.cuda_graph
            runner.run_pass()  # warm-up after capture
            start, passes = time.monotonic(), 0
            while passes == 0 or time.monotonic() - start < self.config.tune_window_s:
                runner.run_pass()
                passes += 1
            window = Window(f"tune{len(self.rows)}", start, time.monotonic())
            del runner, session, batches
        except SubmissionError as exc:
            row.error = "; ".join(exc.problems)
            return row
        time.sleep(self.lag_s)
        images = passes * self.dataset.count
        joules = _window_joules(self.samples_path, window)
        row.passes, row.seconds = passes, window.seconds
        row.images_per_second, row.seconds_per_image = images / window.seconds, window.seconds / images
        row.joules_per_image = None if joules is None else joules / images
        return row


def run_tuning(model_path: Path, contract: Contract, dataset: Dataset, config: ScoreConfig,
               samples_path: Path | None, progress: Progress) -> tuple[RuntimeConfig, Tuning]:
    """Search the settings one at a time; return the winning runtime settings and the record for the result."""
    trial = _Trial(model_path, contract, dataset, config, samples_path, progress)
    criterion = ""

    def cost(candidate: RuntimeConfig) -> float:
        nonlocal criterion
        row = trial.rows[candidate] = trial.measure(candidate)
        if row.error:
            return float("inf")
        if not criterion:  # decided once, by the first measurement: energy when a meter gave joules
            criterion = BY_ENERGY if row.joules_per_image is not None else BY_TIME
        value = row.joules_per_image if criterion == BY_ENERGY else row.seconds_per_image
        return float("inf") if value is None else float(value)

    start, dimensions = search_space(contract, config.runtime)
    best = coordinate_search(start, dimensions, cost)
    if all(row.error for row in trial.rows.values()):
        raise SubmissionError(["no tuning candidate could run: "
                               + "; ".join(str(row.error) for row in trial.rows.values())])
    return best, Tuning(criterion=criterion, search="coordinate", window_s=config.tune_window_s,
                        order=[name for name, _ in dimensions], candidates=list(trial.rows.values()),
                        winner=_candidate(best))
