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
import select
import signal
import subprocess
import sys
import threading
import time
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


def _timed_out(timeout_s: float) -> CheckOutcome:
    return CheckOutcome([f"the check did not finish within {timeout_s:g} s; the file is too large or too "
                         "complex to analyse: simplify the model"])


def _crashed(how: str) -> CheckOutcome:
    return CheckOutcome([f"the check of the file crashed ({how}: it ran out of memory or CPU time); the file "
                         "is malformed or too large to analyse"])


def _how(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


def run_in_fresh_child(argv: list[str], timeout_s: float) -> CheckOutcome:
    """One check in a fresh interpreter (it pays the imports of onnx and onnxruntime: about half a second)."""
    limits = ChildLimits(CHECK_CPU_S, CHECK_MEMORY_BYTES)
    child = subprocess.Popen(limits.command("evaluator.serve.checking", *argv), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                             env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        stdout, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return _timed_out(timeout_s)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        return _crashed(_how(child.returncode))
    return from_json(CheckOutcome, json.loads(lines[-1]), "check outcome")


class CheckServer:
    """A long-lived child that imported the checker once and forks one limited grandchild per check.

    The grandchild gets the same limits as a fresh child (CPU time, address space, killed with its parent,
    killed at the timeout), so the isolation is the same; what is saved is the interpreter's start and
    the imports, per upload. One check at a time; a server that dies is started again, and if it cannot be,
    the check runs in a fresh child.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-m", "evaluator.serve.checking", "serve"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                   start_new_session=True, env=os.environ | SINGLE_THREADED)
        if _read_line(process, 120.0) != "ready":
            _stop(process)
            raise OSError("the check server did not start")
        return process

    def run(self, argv: list[str], timeout_s: float) -> CheckOutcome:
        with self._lock:
            for _ in range(2):
                try:
                    if self._process is None or self._process.poll() is not None:
                        self._process = self._start()
                    assert self._process.stdin is not None
                    self._process.stdin.write(json.dumps({"argv": argv, "allowed_seconds": timeout_s}) + "\n")
                    self._process.stdin.flush()
                    line = _read_line(self._process, timeout_s + 30.0)
                    if line:
                        return from_json(CheckOutcome, json.loads(line), "check outcome")
                except (OSError, ValueError):
                    pass
                if self._process is not None:
                    _stop(self._process)
                self._process = None
        return run_in_fresh_child(argv, timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                _stop(self._process)
                self._process = None


SINGLE_THREADED = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # fork-safe


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """One line from the server, or "" when none came in time (one request at a time: nothing is buffered)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    return process.stdout.readline().strip() if ready else ""


def _stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


_SERVER = CheckServer()


def check_model_isolated(path: Path, limits: Limits, timeout_s: float = CHECK_TIMEOUT_S) -> CheckOutcome:
    """``edl check`` of ``path`` in a limited child: the contract, onnx's checker, onnxruntime loading it."""
    return _SERVER.run(["model", str(path), json.dumps(to_json(limits))], timeout_s)


def check_description_isolated(path: Path, max_pages: int, timeout_s: float = CHECK_TIMEOUT_S) -> CheckOutcome:
    """A description must be a readable PDF of at most ``max_pages`` pages."""
    return _SERVER.run(["pdf", str(path), str(max_pages)], timeout_s)


def close_check_server() -> None:
    _SERVER.close()


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


def _dispatch(argv: list[str]) -> CheckOutcome:
    kind, path = argv[0], Path(argv[1])
    if kind == "model":
        return _model(path, from_json(Limits, json.loads(argv[2]), "limits"))
    return _pdf(path, int(argv[2]))


def _grandchild(argv: list[str], write_end: int) -> None:
    """In the forked grandchild: the limits, the check, its outcome down the pipe; never returns."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing the checker prints reaches the protocol
        ChildLimits(CHECK_CPU_S, CHECK_MEMORY_BYTES).apply()
        data = json.dumps(to_json(_dispatch(argv))).encode()
        while data:
            data = data[os.write(write_end, data):]
    finally:
        os._exit(0)


def _forked(argv: list[str], timeout_s: float) -> CheckOutcome:
    """One check in a forked, limited grandchild, killed at ``timeout_s``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _grandchild(argv, write_end)
    os.close(write_end)
    deadline, received = time.monotonic() + timeout_s, bytearray()
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return _timed_out(timeout_s)
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            received += chunk
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not received:
        return _crashed(_how(code))
    return from_json(CheckOutcome, json.loads(received), "check outcome")


def serve() -> int:
    """The check server: imports once, then one forked check per request line, one outcome line each."""
    import onnxruntime  # noqa: F401 - paid once, here, not per upload
    import pypdf  # noqa: F401

    import evaluator.contract.check  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        outcome = _forked(list(request["argv"]), float(request["allowed_seconds"]))
        print(json.dumps(to_json(outcome)), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve()
    print(json.dumps(to_json(_dispatch(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
