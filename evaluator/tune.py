"""``edl score --tune``: the same bounded search for every submission over the allowed runtime settings.

Each candidate (batch size from a fixed set when the graph leaves it free; on CUDA, NHWC and CUDA
graphs on and off) runs one warm-up pass, then passes for a short window on the same sampler as
the final measurement. The lowest energy per image wins (time per image when no meter is
available, and the record says which). The winner is then measured in full by the scorer.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator.errors import MeterError, SubmissionError
from evaluator.power.analysis import Window, domain_energy, load_samples
from evaluator.runtime import BoundRunner, create_session, cuda_unavailable_reason, make_batches
from evaluator.submission import Contract

if TYPE_CHECKING:
    from evaluator.data import Dataset
    from evaluator.score import Progress, ScoreOptions

BATCH_SIZES = (250, 500, 1000, 2000)


@dataclass(frozen=True)
class Candidate:
    batch_size: int
    prefer_nhwc: bool
    cuda_graph: bool

    def apply(self, options: ScoreOptions) -> ScoreOptions:
        return dataclasses.replace(options, batch_size=self.batch_size, prefer_nhwc=self.prefer_nhwc,
                                   cuda_graph=self.cuda_graph)


def candidates(contract: Contract, options: ScoreOptions) -> list[Candidate]:
    """The search space: identical for every submission of the same contract and provider."""
    fixed = contract.fixed_batch or contract.metadata_batch
    sizes = (fixed,) if fixed else BATCH_SIZES
    on_gpu = options.provider in ("cuda", "tensorrt") or (
        options.provider == "auto" and cuda_unavailable_reason() is None)
    switches = [(True, True), (True, False), (False, True), (False, False)] if on_gpu else [(options.prefer_nhwc,
                                                                                               False)]
    return [Candidate(size, nhwc, graph) for size in sizes for nhwc, graph in switches]


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
    """Measure every candidate in a short window; return the winner and the record for the result."""
    tried: list[tuple[Candidate, Window | None, int, str]] = []
    for candidate in candidates(contract, options):
        progress.phase(f"tune b{candidate.batch_size}{' nhwc' if candidate.prefer_nhwc else ''}"
                       f"{' graph' if candidate.cuda_graph else ''}")
        try:
            settings = candidate.apply(options).runtime(out_dir)
            session, info = create_session(model_path, settings)
            batches, _ = make_batches(dataset.images, contract, candidate.batch_size)
            runner = BoundRunner(session, contract, batches, info, options.gpu, dataset.count)
            runner.run_pass()  # warm-up: cuDNN search, graph capture, allocations
            start = time.monotonic()
            passes = 0
            while passes == 0 or time.monotonic() - start < options.tune_seconds:
                runner.run_pass()
                passes += 1
            tried.append((candidate, Window(f"tune{len(tried)}", start, time.monotonic()), passes, ""))
            del runner, session, batches
        except SubmissionError as exc:
            tried.append((candidate, None, 0, "; ".join(exc.problems)))
        time.sleep(settle_s)
    time.sleep(settle_s)  # let the sampler record past the last window
    rows = []
    for candidate, window, passes, error in tried:
        row: dict[str, object] = dataclasses.asdict(candidate) | {"error": error or None}
        if window is not None:
            images = passes * dataset.count
            joules = _window_joules(samples_path, window)
            row |= {"window": dataclasses.asdict(window), "passes": passes,
                    "images_per_second": images / window.seconds,
                    "joules_per_image": None if joules is None else joules / images,
                    "seconds_per_image": window.seconds / images}
        rows.append(row)
    measured = [row for row in rows if not row["error"]]
    if not measured:
        raise SubmissionError(["no tuning candidate could run: " + "; ".join(str(r["error"]) for r in rows)])
    by_energy = all(row["joules_per_image"] is not None for row in measured)
    criterion = "joules_per_image" if by_energy else "seconds_per_image"
    best = min(measured, key=lambda row: row[criterion])
    winner = Candidate(best["batch_size"], best["prefer_nhwc"], best["cuda_graph"])
    return winner, {"criterion": criterion, "seconds_per_candidate": options.tune_seconds,
                    "candidates": rows, "winner": dataclasses.asdict(winner)}
