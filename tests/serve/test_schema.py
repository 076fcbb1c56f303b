"""Bad input at the API: schemathesis, driven by the app's own OpenAPI schema, against a real server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from serve.web_fixtures import live_server

from evaluator.serve.app import create_app
from evaluator.serve.competition import open_store
from evaluator.serve.web import WebLimits

UNLIMITED = WebLimits(read_per_s=1e6, read_burst=1e6, write_per_s=1e6, write_burst=1e6, signin_per_s=1e6,
                      signin_burst=1e6)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(competition, tmp_path):
    token = open_store(competition).add_team("fuzz")
    with live_server(create_app(competition.root, UNLIMITED)) as url:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/api/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
             "--max-examples", "20", "--seed", "7", "--max-time", "150", "--workers", "1",
             "--header", f"Authorization: Bearer {token}", "--request-timeout", "60"],
            capture_output=True, text=True, timeout=420, env=os.environ | {"NO_COLOR": "1"}, cwd=tmp_path)
    (tmp_path / "schemathesis.txt").write_text(run.stdout)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
