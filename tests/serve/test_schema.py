"""Bad input at the API: schemathesis, driven by the app's own OpenAPI schema, against a real server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from builders import oracle_model
from serve.web_fixtures import bearer, live_server

from evaluator.serve.app import create_app
from evaluator.serve.competition import open_store
from evaluator.serve.web import WebLimits

UNLIMITED = WebLimits(read_per_s=1e6, read_burst=1e6, write_per_s=1e6, write_burst=1e6, signin_per_s=1e6,
                      signin_burst=1e6)
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def schemathesis(url: str, token: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/api/openapi.json", "--checks", CHECKS,
         "--seed", "7", "--workers", "1", "--header", f"Authorization: Bearer {token}", "--request-timeout", "60",
         *extra], capture_output=True, text=True, timeout=420, env=os.environ | {"NO_COLOR": "1"}, cwd=tmp_path)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(organiser_token, tmp_path):
    competition, organiser = organiser_token
    token = open_store(competition).add_team("fuzz")
    with live_server(create_app(competition.root, UNLIMITED)) as url:
        httpx.post(f"{url}/api/submissions", headers=bearer(token), timeout=60,  # ids 1 and 2 exist
                   files={"model": ("m.onnx", oracle_model(tmp_path / "m.onnx").read_bytes())})
        httpx.post(f"{url}/api/submissions", headers=bearer(token), timeout=60, files={"model": ("x.onnx", b"x")})
        runs = {"team": schemathesis(url, token, tmp_path, "--max-examples", "20", "--max-time", "150"),
                "organiser": schemathesis(url, organiser, tmp_path, "--max-examples", "20", "--max-time", "60",
                                          "--include-path-regex", "^/api/organiser")}
    for who, run in runs.items():
        (tmp_path / f"schemathesis-{who}.txt").write_text(run.stdout)
        summary = [line.strip() for line in run.stdout.splitlines() if "generated," in line]
        print(f"\nschemathesis as the {who}: {summary}")
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
