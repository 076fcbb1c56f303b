"""``edl verify``: re-check a result from its own evidence, independently of the run that made it.

Checks the document's checksum, the model and samples files against their recorded sha256, the
internal arithmetic (energy per pass times passes, accuracy against correct answers, category,
throughput), and recomputes the energy from the stored samples and windows.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import EdlError, MeterError
from evaluator.fileio import sha256_file
from evaluator.power.analysis import Window, energy_report, load_samples
from evaluator.ranking import category_for

INTEGRITY_KEY = "integrity"
REL_TOL = 1e-9


def document_digest(document: dict) -> str:
    """SHA-256 of the result without its integrity field, keys sorted: any edit changes it."""
    body = {key: value for key, value in document.items() if key != INTEGRITY_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(document: dict) -> dict:
    """Add the integrity field (the document's own digest)."""
    document[INTEGRITY_KEY] = {"algorithm": "sha256 of the canonical JSON without this field",
                               "sha256": document_digest(document)}
    return document


@dataclass
class Check:
    name: str
    outcome: str  # pass | fail | skip
    detail: str = ""


def _close(a: float | None, b: float | None, rel: float = REL_TOL, abs_tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def verify_result(path: Path, model: Path | None = None) -> list[Check]:
    """Every check on the result at ``path`` (or the result.json in that folder); raises only for a non-result."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdlError(f"{path}: not a readable JSON result ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != "edl-result":
        raise EdlError(f"{path}: not an edl result document")
    checks: list[Check] = []

    def add(name: str, ok: bool | None, detail: str = "") -> None:
        checks.append(Check(name, "skip" if ok is None else ("pass" if ok else "fail"), detail))

    recorded = (doc.get(INTEGRITY_KEY) or {}).get("sha256")
    add("document checksum", recorded == document_digest(doc) if recorded else False,
        "matches" if recorded == document_digest(doc) else "the document was edited after it was written"
        if recorded else "no integrity field")
    if doc.get("status") != "scored":
        add("status", None, f"{doc.get('status')}: {doc.get('reason', '')}")
        return checks

    model_path = model or Path(doc["model"]["path"])
    if model_path.is_file():
        digest = sha256_file(model_path)
        add("model sha256", digest == doc["model"]["sha256"], f"{model_path}: {digest[:16]}…")
    else:
        add("model sha256", None, f"{model_path} not found; pass --model PATH")

    images, passes, correct = doc["data"]["images"], doc["passes"], doc["correct"]
    add("accuracy = correct / images", _close(doc["accuracy"], correct / images), f"{correct}/{images}")
    thresholds = tuple(doc.get("thresholds") or ())
    if thresholds:
        add("category", doc.get("category") == category_for(doc["accuracy"], thresholds), f"{doc.get('category')}")
    windows = {w["name"]: Window(w["name"], w["start_s"], w["end_s"]) for w in doc.get("windows", [])}
    measured = windows.get("measured")
    add("seconds = measured window", measured is not None and _close(doc["seconds"], measured.seconds))
    add("images/s = passes x images / seconds",
        _close(doc["images_per_second"], passes * images / doc["seconds"]))

    energy = doc.get("energy") or {}
    total = energy.get("total_j")
    if total is not None:
        add("per_pass_j x passes = total_j", _close(energy["per_pass_j"] * passes, total))
        add("per_image_j x images x passes = total_j", _close(energy["per_image_j"] * images * passes, total))
        add("total_j = sum of counted domains",
            _close(total, sum(energy[f"{d}_j"] for d in energy.get("total_domains", []))))
    samples_info = (doc.get("files") or {}).get("samples")
    if not samples_info:
        add("samples file", None, "metering was off: nothing to recompute")
        return checks
    samples_path = path.parent / samples_info["name"]
    if not samples_path.is_file():
        add("samples sha256", False, f"{samples_path} is missing")
        return checks
    digest = sha256_file(samples_path)
    add("samples sha256", digest == samples_info["sha256"], f"{digest[:16]}…")
    try:
        samples = load_samples(samples_path)
    except MeterError as exc:
        add("samples readable", False, str(exc))
        return checks
    add("samples complete", samples.complete, "ends with the sampler's orderly end" if samples.complete
        else "the sampler did not finish: an interrupted run")
    if measured is None:
        add("energy recomputed", False, "no measured window in the result")
        return checks
    pass_windows = [w for name, w in windows.items() if name.startswith("pass")]
    try:
        again = energy_report(samples, measured, passes, images, windows.get("idle"),
                              sorted(pass_windows, key=lambda w: w.start_s))
    except MeterError as exc:
        add("energy recomputed", False, str(exc))
        return checks
    for key in ("total_j", "gpu_j", "cpu_j", "dram_j", "above_idle_j"):
        if key in energy:
            add(f"energy.{key} recomputed from samples", _close(again.get(key), energy.get(key)),
                f"recorded {energy.get(key)}, recomputed {again.get(key)}")
    return checks
