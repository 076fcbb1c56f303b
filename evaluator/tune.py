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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator.errors import MeterError, SubmissionError
from evaluator.power.analysis import Window, domain_energy, load_samples
from evaluator.runtime import create_session, cuda_unavailable_reason, make_batches, prime_runner
from evaluator.submission import Contract

if TYPE_CHECKING:
    from evaluator.data import Dataset
    from evaluator.score import Progress, ScoreOptions

BATCH_SIZES = (250, 500, 1000, 2000)
CUDNN_SEARCHES = ("EXHAUSTIVE", "HEURISTIC")


@dataclass(frozen=True)
class Candidate:
    batch_size: int
    prefer_nhwc: bool
    cuda_graph: bool
    cudnn_search: str

    def apply(self, options: ScoreOptions) -> ScoreOptions:
        return dataclasses.replace(options, batch_size=self.batch_size, prefer_nhwc=self.prefer_nhwc,
                                   cuda_graph=self.cuda_graph, cudnn_search=self.cudnn_search)

    def label(self) -> str:
        return (f"b{self.batch_size}{' nhwc' if self.prefer_nhwc else ''}{' graph' if self.cuda_graph else ''}"
                f" {self.cudnn_search.lower()}")


def search_space(contract: Contract, options: ScoreOptions) -> tuple[Candidate, list[tuple[str, tuple]]]:
    """The start and the settings searched, in order: identical for every submission of a contract."""
    fixed = contract.fixed_batch or contract.metadata_batch
    start_batch = contract.batch_size(options.batch_size)[0]
    on_gpu = options.provider in ("cuda", "tensorrt") or (
        options.provider == "auto" and cuda_unavailable_reason() is None)
    start = Candidate(start_batch, options.prefer_nhwc, options.cuda_graph and on_gpu, options.cudnn_search)
    dimensions: list[tuple[str, tuple]] = [
        ("batch_size", (fixed,) if fixed else tuple(sorted({*BATCH_SIZES, start_batch})))]
    if on_gpu:
        dimensions += [("prefer_nhwc", (True, False)), ("cuda_graph", (True, False)),
                       ("cudnn_search", tuple(dict.fromkeys((start.cudnn_search, *CUDNN_SEARCHES))))]
    return start, dimensions


def coordinate_search(start: Candidate, dimensions: list[tuple[str, tuple]],
                      cost: Callable[[Candidate], float]) -> Candidate:
    """Best value of each setting in turn, the others held at their best so far; one cost call per candidate."""
    costs: dict[Candidate, float] = {}
    best = start
    for name, values in dimensions:
        tried = [dataclasses.replace(best, **{name: value}) for value in values]
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
        values = [domain_energy(samples, domain, window).get("joules") for domain in ("gpu", "cpu")]
    except MeterError:
        return None
    counted = [v for v in values if v is not None]
    return sum(counted) if counted else None


def run_tuning(model_path: Path, contract: Contract, dataset: Dataset, options: ScoreOptions, out_dir: Path,
               samples_path: Path | None, progress: Progress, settle_s: float = 0.05
               ) -> tuple[Candidate, dict[str, object]]:
    """Search the settings one at a time; return the winner and the record for the result."""
    rows: dict[Candidate, dict[str, object]] = {}
    lag_s = max(settle_s, 3 * options.sample_ms / 1000.0)  # the sampler has recorded past the window

    def measure(candidate: Candidate) -> dict[str, object]:
        progress.phase(f"tune {candidate.label()}")
        row: dict[str, object] = dataclasses.asdict(candidate) | {"error": None}
        try:
            settings = candidate.apply(options).runtime(out_dir)
            session, info = create_session(model_path, settings)
            batches, _ = make_batches(dataset.images, contract, candidate.batch_size)
            runner = prime_runner(model_path, session, info, contract, batches, settings, dataset.count)
            row["cuda_graph_ran"] = info.cuda_graph
            runner.run_pass()  # warm-up after capture
            start = time.monotonic()
            passes = 0
            while passes == 0 or time.monotonic() - start < options.tune_seconds:
                runner.run_pass()
                passes += 1
            window = Window(f"tune{len(rows)}", start, time.monotonic())
            del runner, session, batches
        except SubmissionError as exc:
            row["error"] = "; ".join(exc.problems)
            return row
        time.sleep(lag_s)
        images = passes * dataset.count
        joules = _window_joules(samples_path, window)
        return row | {"window": dataclasses.asdict(window), "passes": passes,
                      "images_per_second": images / window.seconds,
                      "joules_per_image": None if joules is None else joules / images,
                      "seconds_per_image": window.seconds / images}

    criterion = ""

    def cost(candidate: Candidate) -> float:
        nonlocal criterion
        row = rows[candidate] = measure(candidate)
        if row["error"]:
            return float("inf")
        if not criterion:  # decided once, by the first measurement: energy when a meter gave joules
            criterion = "joules_per_image" if row["joules_per_image"] is not None else "seconds_per_image"
        value = row[criterion]
        return float("inf") if value is None else float(value)

    start, dimensions = search_space(contract, options)
    best = coordinate_search(start, dimensions, cost)
    measured = [row for row in rows.values() if not row["error"]]
    if not measured:
        raise SubmissionError(["no tuning candidate could run: " + "; ".join(str(r["error"]) for r in rows.values())])
    return best, {"criterion": criterion, "search": "coordinate", "seconds_per_candidate": options.tune_seconds,
                  "order": [name for name, _ in dimensions], "candidates": list(rows.values()),
                  "winner": dataclasses.asdict(best)}
