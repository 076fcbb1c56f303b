"""``edl score --tune``: the same bounded search for every submission over the allowed runtime settings.

A coordinate search from the pinned defaults, one setting at a time (batch size from a fixed set
when the graph leaves it free; on CUDA then NHWC, CUDA graphs, cuDNN algorithm search). For each
setting, every value is measured with the others at their best so far: all its candidates are
prepared (session, resident batches, graph capture, warm-up), then measured in ``tune_rounds``
interleaved rounds (A B C, A B C) of ``tune_window_s`` each, so that the chip warming up during the
search favours none of them. The energy per image is read from the same sampler as the final
measurement (time per image when there is no meter, said so). A value replaces the current one
only if it is better by more than the measurement can resolve: the counter-step bound of a
window and the spread between rounds. A smaller difference never decides, and the default stays.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluator.config import CUDNN_SEARCHES, RuntimeConfig, ScoreConfig
from evaluator.contract.spec import Contract
from evaluator.data.dataset import Dataset
from evaluator.errors import MeterError, SubmissionError
from evaluator.events import EventSink, phase
from evaluator.power.analysis import (
    NVML_COUNTER_PERIOD_S,
    TOTAL_DOMAINS,
    Window,
    check_continuity,
    domain_reading,
    load_samples,
)
from evaluator.report.result import Tuning, TuningCandidate, TuningDecision
from evaluator.runtime.providers import uses_gpu
from evaluator.runtime.runner import BoundRunner, make_batches, prime_runner

BATCH_SIZES = (250, 500, 1000, 2000)
SEARCHED_CUDNN = ("EXHAUSTIVE", "HEURISTIC")
BY_ENERGY, BY_TIME = "joules per image", "seconds per image (no meter)"
Dimensions = list[tuple[str, tuple[object, ...]]]
Measure = Callable[[list[RuntimeConfig]], dict[RuntimeConfig, list[float]]]


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


def _replace(config: RuntimeConfig, name: str, value: object) -> RuntimeConfig:
    return dataclasses.replace(config, **typing.cast(dict[str, Any], {name: value}))


def decide(incumbent: RuntimeConfig, costs: dict[RuntimeConfig, list[float]], bound: float
           ) -> tuple[RuntimeConfig, float]:
    """The cheapest candidate, if it beats ``incumbent`` by more than the margin; else ``incumbent``.

    The margin (relative) is the larger of ``bound`` and the rounds' own spread for the two.
    """
    def centre(candidate: RuntimeConfig) -> float:
        return statistics.median(costs[candidate]) if costs[candidate] else float("inf")

    def spread(candidate: RuntimeConfig) -> float:
        values = costs[candidate]
        return (max(values) - min(values)) / centre(candidate) if len(values) > 1 and centre(candidate) else 0.0

    best = min(costs, key=centre)
    if best == incumbent or centre(incumbent) == float("inf"):
        return best, bound
    margin = max(bound, spread(best), spread(incumbent))
    return (best if centre(best) < centre(incumbent) * (1 - margin) else incumbent), margin


def coordinate_search(start: RuntimeConfig, dimensions: Dimensions, measure: Measure, bound: float
                      ) -> tuple[RuntimeConfig, list[TuningDecision]]:
    """Each setting in turn: its values measured together, the winner kept only past the margin."""
    best, decisions = start, []
    for name, values in dimensions:
        candidates = [_replace(best, name, value) for value in values]
        candidates.sort(key=lambda c: c != best)  # the incumbent first: it is measured first in every round
        costs = measure(candidates)
        chosen, margin = decide(best, costs, bound)
        decisions.append(TuningDecision(setting=name, chosen=str(getattr(chosen, name)), margin=margin,
                                        changed=chosen != best))
        best = chosen
    return best, decisions


def _window_joules(samples_path: Path | None, window: Window) -> float | None:
    if samples_path is None:
        return None
    try:
        samples = load_samples(samples_path)
        check_continuity(samples, window)  # the measured window's gap and wrap rules: a stalled round has no figure
        values = [domain_reading(samples, domain, window).joules for domain in TOTAL_DOMAINS]
    except MeterError:
        return None
    counted = [v for v in values if v is not None]
    return sum(counted) if counted else None


class _Trial:
    """Prepares candidates and measures them in interleaved rounds of short windows on the live sampler."""

    def __init__(self, model_path: Path, contract: Contract, dataset: Dataset, config: ScoreConfig,
                 samples_path: Path | None, sink: EventSink) -> None:
        self.model_path, self.contract, self.dataset, self.config = model_path, contract, dataset, config
        self.samples_path, self.sink = samples_path, sink
        self.lag_s = max(0.05, 3 * config.meter.sample_period_s)  # the sampler has recorded past the window
        self.rows: dict[RuntimeConfig, TuningCandidate] = {}
        self.criterion = ""

    def _prepare(self, candidate: RuntimeConfig, row: TuningCandidate) -> BoundRunner | None:
        try:
            batches, _ = make_batches(self.dataset.images, self.contract, row.batch_size)
            runner = prime_runner(self.model_path, self.contract, batches, candidate, self.dataset.count)
            row.cuda_graph_ran = runner.info.cuda_graph
            runner.run_pass()  # warm-up after capture
            return runner
        except SubmissionError as exc:
            row.error = "; ".join(exc.problems)
            return None

    def _window(self, runner: BoundRunner, row: TuningCandidate) -> float:
        start, passes = time.monotonic(), 0
        while passes == 0 or time.monotonic() - start < self.config.tune_window_s:
            runner.run_pass()
            passes += 1
        window = Window("tune", start, time.monotonic())
        time.sleep(self.lag_s)
        images = passes * self.dataset.count
        joules = _window_joules(self.samples_path, window)
        if not self.criterion:  # decided once, by the first window: energy when a meter gave joules
            self.criterion = BY_ENERGY if joules is not None else BY_TIME
        cost = joules / images if self.criterion == BY_ENERGY and joules is not None else window.seconds / images
        row.rounds.append(cost)
        row.passes, row.seconds = (row.passes or 0) + passes, (row.seconds or 0.0) + window.seconds
        return cost

    def measure(self, candidates: list[RuntimeConfig]) -> dict[RuntimeConfig, list[float]]:
        """Every candidate's cost per round (empty for one that cannot run)."""
        runners = {}
        for candidate in candidates:
            row = self.rows.setdefault(candidate, _candidate(candidate))
            if not row.rounds and not row.error and (runner := self._prepare(candidate, row)) is not None:
                runners[candidate] = runner
        for round_index in range(self.config.tune_rounds):
            for candidate, runner in runners.items():
                with phase(self.sink, f"tune {_label(candidate)} ({round_index + 1}/{self.config.tune_rounds})"):
                    self._window(runner, self.rows[candidate])
        runners.clear()
        for row in self.rows.values():
            _summarise_row(row, self.dataset.count, self.criterion)
        return {candidate: self.rows[candidate].rounds for candidate in candidates}


def _candidate(config: RuntimeConfig) -> TuningCandidate:
    assert config.batch_size is not None
    return TuningCandidate(config.batch_size, config.prefer_nhwc, config.cuda_graph, config.cudnn_search)


def _label(config: RuntimeConfig) -> str:
    return (f"b{config.batch_size}{' nhwc' if config.prefer_nhwc else ''}{' graph' if config.cuda_graph else ''} "
            f"{config.cudnn_search.lower()}")


def _summarise_row(row: TuningCandidate, images: int, criterion: str) -> None:
    if not row.rounds or row.seconds is None or row.passes is None:
        return
    row.images_per_second = row.passes * images / row.seconds
    row.seconds_per_image = row.seconds / (row.passes * images)
    row.joules_per_image = statistics.median(row.rounds) if criterion == BY_ENERGY else None


def run_tuning(model_path: Path, contract: Contract, dataset: Dataset, config: ScoreConfig,
               samples_path: Path | None, sink: EventSink) -> tuple[RuntimeConfig, Tuning]:
    """Search the settings one at a time; return the winning runtime settings and the record for the result."""
    trial = _Trial(model_path, contract, dataset, config, samples_path, sink)
    start, dimensions = search_space(contract, config.runtime)
    # NVML's counter moves every ~100 ms: one step at each edge of a window bounds what a window can resolve.
    bound = 2 * NVML_COUNTER_PERIOD_S / config.tune_window_s if uses_gpu(config.runtime.provider) else 0.0
    best, decisions = coordinate_search(start, dimensions, trial.measure, bound)
    if all(row.error for row in trial.rows.values()):
        raise SubmissionError(["no tuning candidate could run: "
                               + "; ".join(str(row.error) for row in trial.rows.values())])
    return best, Tuning(criterion=trial.criterion, search="coordinate, interleaved rounds",
                        window_s=config.tune_window_s, rounds=config.tune_rounds,
                        order=[name for name, _ in dimensions],
                        candidates=list(trial.rows.values()), decisions=decisions, winner=_candidate(best))
