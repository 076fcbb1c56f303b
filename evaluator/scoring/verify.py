"""``edl verify``: re-check a result from its own evidence, independently of the run that made it.

Here: the document's seal, its signature, its name, the review decisions on it and the model file
against its recorded sha256. The figures (arithmetic, every run's energy recomputed from its
stored samples) are ``verify_figures``'s; the audit's checks and re-derivation ``verify_audit``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import ResultError
from evaluator.fileio import sha256_file
from evaluator.report.batch_record import BATCH_NAME
from evaluator.report.board_entry import folder_problem
from evaluator.report.integrity import seal_holds
from evaluator.report.reader import read_batch, read_result
from evaluator.report.result import RESULT_NAME, Result
from evaluator.report.review import read_decisions
from evaluator.report.signing import load_public, signature_problem
from evaluator.scoring.checklist import Check, Checks
from evaluator.scoring.verify_audit import check_audit
from evaluator.scoring.verify_figures import check_figures


@dataclass(frozen=True)
class VerifyOptions:
    """What a verification may use beyond the result folder itself."""

    model: Path | None = None  # the submission, where it is not found by itself
    audit_secret: str | None = None  # re-derives the audit copies
    data: Path | None = None  # the scored test set, where the result's own path does not lead to it
    public_key: Path | None = None  # the organiser's: the result must be signed with its private key
    strict: bool = False  # a check that cannot be made is a failure


def _submissions_folder(result_path: Path) -> Path | None:
    """The folder score-dir scored, as its batch.json beside the result folders records it."""
    batch = result_path.parent.parent / BATCH_NAME
    try:
        directory = Path(read_batch(batch).directory)
    except ResultError:
        return None
    return directory if directory.is_absolute() else batch.parent / directory


def locate_model(result: Result, result_path: Path, model: Path | None) -> tuple[Path | None, list[Path]]:
    """The submission: --model; the recorded path (relative to the result's folder, or as given); else a
    file with the recorded sha256 in the submissions folder. Returns it (None: not found) and where it looked."""
    recorded = Path(result.model.path)
    candidates = [model] if model is not None else [result_path.parent / recorded, recorded]
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None or model is not None:
        return found, candidates
    folder = _submissions_folder(result_path)
    if folder is not None and folder.is_dir():
        for path in sorted([*folder.glob("*.onnx"), *folder.glob("*/*.onnx")]):
            if path.stat().st_size == result.model.bytes and sha256_file(path) == result.model.sha256:
                return path, [*candidates, folder]
        candidates.append(folder)
    return None, candidates


def _check_model(result: Result, found: Path | None, looked: list[Path], checks: Checks) -> None:
    if found is None:
        checks.add("model sha256", None, "the submission is not at " + ", ".join(str(p) for p in looked)
                   + "; pass --model PATH")
        return
    digest = sha256_file(found)
    checks.add("model sha256", digest == result.model.sha256, f"{found}: {digest[:16]}…")


def _check_signature(result: Result, public_key: Path | None, checks: Checks) -> None:
    if public_key is None:
        detail = (f"signed by key {result.signature.public_key_sha256[:16]}…; pass --public-key to check it"
                  if result.signature else "unsigned; pass --public-key to require the organiser's signature")
        checks.add("signature", None, detail)
        return
    problem = signature_problem(result, load_public(public_key))
    checks.add("signature by the organiser's key", not problem, problem or "verifies")


def _in_results_root(path: Path) -> bool:
    """The result's folder sits in a folder of results (a batch's, or beside other result folders)."""
    root = path.parent.parent
    return (root / BATCH_NAME).is_file() or any(
        (other / RESULT_NAME).is_file() for other in root.iterdir() if other.is_dir() and other != path.parent)


def _check_name(result: Result, path: Path, checks: Checks) -> None:
    """A board names a result by its signed model.name: in a folder of results, its folder must be that name
    (or score-dir's NAME@GPU-KIND); a result folder standing alone (edl score --out DIR) may be named freely."""
    if not _in_results_root(path):
        return
    problem = folder_problem(path.parent.name, result.model.name)
    checks.add("folder named by its signed model.name", not problem, problem or result.model.name)


def _check_reviews(result: Result, path: Path, public_key: Path | None, checks: Checks) -> None:
    """Each review decision beside it: signed (by the organiser's key, with --public-key) and bound to it."""
    organiser = load_public(public_key) if public_key is not None else None
    for standing in read_decisions(path.parent, result, organiser):
        ok = standing.holds if organiser is not None or standing.problem else None
        detail = standing.line() + ("" if organiser is not None else " (pass --public-key to check its signer)")
        checks.add(f"review decision {standing.file}", ok, detail)


def verify_result(path: Path, options: VerifyOptions | None = None) -> list[Check]:
    """Every check on the result at ``path`` (or the result.json in that folder); raises only for a non-result."""
    options = options or VerifyOptions()
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_NAME
    result = read_result(path)
    checks = Checks()
    sealed = seal_holds(result)
    checks.add("document checksum", sealed, "matches" if sealed else "the document was edited after it was written"
               if result.integrity else "no integrity field")
    _check_signature(result, options.public_key, checks)
    _check_name(result, path, checks)
    _check_reviews(result, path, options.public_key, checks)
    if not result.scored:
        checks.add("status", None, f"{result.status}: {result.why}")
        return checks.items
    assert result.data is not None
    found, looked = locate_model(result, path, options.model)
    _check_model(result, found, looked, checks)
    check_figures(result, path.parent, checks)
    check_audit(result, found, options.audit_secret, options.data, checks)
    return checks.items
