"""The check of an upload, in an isolated child: ``edl check``'s own machinery, never in the server's process.

A hostile file may try to exhaust memory or CPU while it is parsed, so the model check (the contract,
onnx's checker, onnxruntime loading it) and the description check (pypdf counting pages) each run in a
child process of their own session, under the same operating-system limits a scoring child gets
(``evaluator.batch.limits``), killed with its whole process group at a timeout. The child prints one
JSON line; anything else (a crash, a signal, a timeout) becomes one problem a team can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.batch.limits import ChildLimits
from evaluator.config import Limits
from evaluator.typedjson import from_json, to_json

CHECK_TIMEOUT_S = 120.0
CHECK_CPU_S = 120
CHECK_MEMORY_BYTES = 4 << 30


@dataclass(frozen=True)
class CheckOutcome:
    """What a team is told about its upload: every problem at once, and the warnings."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def _run(argv: list[str], timeout_s: float) -> CheckOutcome:
    limits = ChildLimits(CHECK_CPU_S, CHECK_MEMORY_BYTES)
    child = subprocess.Popen([sys.executable, "-m", "evaluator.serve.checking", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env=os.environ | {"PYTHONUNBUFFERED": "1"}, preexec_fn=limits.apply)
    try:
        stdout, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return CheckOutcome([f"the check did not finish within {timeout_s:g} s; the file is too large or too "
                             "complex to analyse: simplify the model"])
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
        return CheckOutcome([f"the check of the file crashed ({how}: it ran out of memory or CPU time); the file "
                             "is malformed or too large to analyse"])
    return from_json(CheckOutcome, json.loads(lines[-1]), "check outcome")


def check_model_isolated(path: Path, limits: Limits, timeout_s: float = CHECK_TIMEOUT_S) -> CheckOutcome:
    """``edl check`` of ``path`` in a limited child: the contract, onnx's checker, onnxruntime loading it."""
    return _run(["model", str(path), json.dumps(to_json(limits))], timeout_s)


def check_description_isolated(path: Path, max_pages: int, timeout_s: float = CHECK_TIMEOUT_S) -> CheckOutcome:
    """A description must be a readable PDF of at most ``max_pages`` pages."""
    return _run(["pdf", str(path), str(max_pages)], timeout_s)


def _model(path: Path, limits: Limits) -> CheckOutcome:
    from evaluator.contract.check import check_submission

    report = check_submission(path, limits)
    problems = [problem.replace(str(path), "the file") for problem in report.problems]  # our path is not theirs
    return CheckOutcome(problems, [warning.replace(str(path), "the file") for warning in report.warnings])


def _pdf(path: Path, max_pages: int) -> CheckOutcome:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # its warnings are not the team's problems
    if not path.read_bytes()[:1024].lstrip().startswith(b"%PDF-"):
        return CheckOutcome(["the description is not a PDF file; export the two pages as PDF"])
    try:
        pages = len(PdfReader(path).pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for a damaged file
        return CheckOutcome([f"the description PDF cannot be read ({type(exc).__name__}); export it again"])
    if pages > max_pages:
        return CheckOutcome([f"the description has {pages} pages; at most {max_pages} are allowed"])
    if pages == 0:
        return CheckOutcome(["the description PDF has no pages"])
    return CheckOutcome()


def main(argv: list[str]) -> int:
    kind, path = argv[0], Path(argv[1])
    if kind == "model":
        outcome = _model(path, from_json(Limits, json.loads(argv[2]), "limits"))
    else:
        outcome = _pdf(path, int(argv[2]))
    print(json.dumps(to_json(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
