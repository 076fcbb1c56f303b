"""Load on ``edl serve``: teams uploading at once while the board is read continuously (loopback only, bounded).

Starts the web app as its own process on a free loopback port with scoring off (no worker: the load is the
web side's: streaming, the isolated check of each upload, the store, the board), then N teams upload their
submissions (every one a distinct valid model) concurrently while one reader fetches the board in a loop.
Prints the board's latency (p50, p95, max), each upload's acceptance time (request sent -> "queued,
position N" received, the check in its child included) and checks that nothing was lost or duplicated:
every upload answered with its own id, the store holding exactly those, each queued once.

    python bench/serve_load.py [--teams 20] [--submissions 100] [--out /tmp/serve-load]

The server's rate limits are raised for the run (the reader would otherwise be answered 429 after its
burst): the figures are the cost of serving, not of refusing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from builders import conv_model  # noqa: E402

from evaluator.serve.competition import init_competition, open_store  # noqa: E402
from evaluator.serve.settings import CompetitionSettings  # noqa: E402

SERVER = """
import sys, uvicorn
from pathlib import Path
from evaluator.serve.app import create_app
from evaluator.serve.web import WebLimits
big = 1e6
limits = WebLimits(read_per_s=big, read_burst=big, write_per_s=big, write_burst=big)
uvicorn.run(create_app(Path(sys.argv[1]), limits), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def run_load(workdir: Path, teams: int = 20, submissions: int = 100) -> dict:
    """The load run; returns its figures (and raises AssertionError if anything was lost or duplicated)."""
    per_team = -(-submissions // teams)
    settings = CompetitionSettings(name="Load", deadline="2030-01-01T00:00Z", per_day=per_team, in_total=per_team,
                                   max_queued=per_team)
    competition, _ = init_competition(workdir / "competition", settings)
    store = open_store(competition)
    tokens = {f"team{i:02d}": store.add_team(f"team{i:02d}") for i in range(teams)}
    models = [conv_model(workdir / f"m{i}.onnx", channels=4, seed=i).read_bytes() for i in range(submissions)]
    jobs = [(list(tokens.values())[i % teams], models[i]) for i in range(submissions)]
    process, url = _start(competition.root)
    board_times: list[float] = []
    board_errors: list[str] = []
    stop = threading.Event()

    def read_board() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                answer = client.get("/")
                board_times.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    board_errors.append(str(answer.status_code))

    def send(job: tuple[str, bytes]) -> tuple[float, dict]:
        token, content = job
        started = time.perf_counter()
        answer = httpx.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                            files={"model": ("model.onnx", content)}, timeout=600)
        return time.perf_counter() - started, answer.json() | {"status": answer.status_code}

    reader = threading.Thread(target=read_board)
    try:
        reader.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=teams) as pool:
            answers = list(pool.map(send, jobs))
        wall = time.perf_counter() - started
    finally:
        stop.set()
        reader.join()
        process.terminate()
        process.wait(timeout=30)
    accept = [seconds for seconds, _ in answers]
    ids = [document.get("id") for _, document in answers]
    stored = store.all_submissions()
    problems = [document for _, document in answers if document["status"] != 200 or document["state"] != "queued"]
    assert not problems, problems[:3]
    assert len(set(ids)) == submissions, "an upload was answered with another's id"
    assert sorted(s.id for s in stored) == sorted(ids), "the store does not hold exactly the answered uploads"
    assert all(s.state == "queued" for s in stored) and len({s.sha256 for s in stored}) == submissions
    assert all(len(store.history(s.id)) == 3 for s in stored)  # received, checked, queued: each once
    assert not board_errors, board_errors[:5]
    return {"teams": teams, "submissions": submissions, "wall_s": round(wall, 2), "board_reads": len(board_times),
            "board_p50_ms": round(statistics.median(board_times) * 1e3, 1),
            "board_p95_ms": round(_percentile(board_times, 0.95) * 1e3, 1),
            "board_max_ms": round(max(board_times) * 1e3, 1),
            "accept_p50_s": round(statistics.median(accept), 2), "accept_p95_s": round(_percentile(accept, 0.95), 2),
            "accept_max_s": round(max(accept), 2), "lost": 0, "duplicated": 0, "scoring": "off (no worker)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="work folder [default: a temporary one]")
    args = parser.parse_args()
    workdir = args.out or Path(tempfile.mkdtemp(prefix="edl-serve-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run_load(workdir, args.teams, args.submissions), indent=2))


if __name__ == "__main__":
    main()
