"""The web app against a real uvicorn server on loopback: uploads, checks, quotas, duplicates, phases, the API."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from builders import conv_model, oracle_model
from serve.web_fixtures import bearer, live_server

from evaluator.serve.app import create_app
from evaluator.serve.competition import init_competition, open_store
from evaluator.serve.settings import CompetitionSettings
from evaluator.serve.web import WebLimits


def pdf_bytes(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def served(competition):
    """The competition served on loopback, with a team 'alpha'; yields (url, token, competition)."""
    token = open_store(competition).add_team("alpha")
    with live_server(create_app(competition.root)) as url:
        yield url, token, competition


def upload(url: str, token: str, content: bytes, name: str = "model.onnx") -> httpx.Response:
    return httpx.post(f"{url}/api/submissions", headers=bearer(token), files={"model": (name, content)}, timeout=120)


def test_a_valid_model_is_queued_within_seconds_under_its_sha256(served, tmp_path):
    url, token, competition = served
    content = oracle_model(tmp_path / "mine.onnx").read_bytes()
    started = time.monotonic()
    answer = upload(url, token, content, "my model.onnx")
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["state"] == "queued" and document["message"] == "queued, position 1"
    assert elapsed < 30
    import hashlib

    digest = hashlib.sha256(content).hexdigest()
    assert document["sha256"] == digest
    assert (competition.uploads / digest / "model.onnx").read_bytes() == content
    assert not list(competition.uploads.rglob("my model.onnx"))  # the client's name is never a path
    assert list((competition.uploads / ".staging").iterdir()) == []


def test_a_broken_model_shows_every_problem_at_once_and_keeps_the_quota(served, tmp_path):
    url, token, _ = served
    broken = oracle_model(tmp_path / "two.onnx", layout="NCHW")
    import onnx

    model = onnx.load(broken)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32  # a wrong input type
    model.opset_import[0].version = 3  # and an opset out of range
    answer = upload(url, token, model.SerializeToString())
    document = answer.json()
    assert document["state"] == "failed" and document["fault"] == "check"
    assert len(document["problems"]) >= 2, document
    assert any("opset 3" in p for p in document["problems"]) and any("int32" in p.lower() for p in document["problems"])
    assert all(p in document["message"] for p in document["problems"])  # one message with every problem
    me = httpx.get(f"{url}/api/me", headers=bearer(token)).json()
    assert me["quota"]["used_total"] == 0


def test_the_same_file_again_returns_the_existing_submission(served, tmp_path):
    url, token, _ = served
    content = oracle_model(tmp_path / "m.onnx").read_bytes()
    first, second = upload(url, token, content).json(), upload(url, token, content, "renamed.onnx").json()
    assert first["id"] == second["id"]
    assert len(httpx.get(f"{url}/api/submissions", headers=bearer(token)).json()) == 1


def test_a_team_over_its_queue_limit_is_refused_with_the_reason(served, tmp_path):
    url, token, _ = served
    for seed in range(2):  # max_queued is 2 by default
        assert upload(url, token, conv_model(tmp_path / f"c{seed}.onnx", seed=seed).read_bytes()).json()["state"] \
            == "queued"
    third = upload(url, token, conv_model(tmp_path / "c2.onnx", seed=2).read_bytes())
    assert third.status_code == 429
    assert "at most 2" in third.json()["detail"]


def test_a_frozen_competition_refuses_uploads_with_the_reason(tmp_path):
    competition, _ = init_competition(tmp_path / "past", CompetitionSettings(name="Past", deadline="2020-01-01T00:00Z"))
    token = open_store(competition).add_team("late")
    with live_server(create_app(competition.root)) as url:
        answer = upload(url, token, oracle_model(tmp_path / "m.onnx").read_bytes())
        assert answer.status_code == 409
        assert "uploads are closed" in answer.json()["detail"] and "2020-01-01" in answer.json()["detail"]
        assert httpx.get(f"{url}/api/competition").json()["phase"] == "frozen"


def test_an_upload_during_a_measurement_window_is_checked_when_it_closes(served, tmp_path):
    url, token, competition = served
    store = open_store(competition)
    store.set_window("worker-test", 120.0)
    answer = upload(url, token, oracle_model(tmp_path / "m.onnx").read_bytes()).json()
    assert answer["state"] == "received" and "waits" in answer["message"]
    time.sleep(2.5)  # the checker polls each second: it must leave the upload alone while the window is open
    assert httpx.get(f"{url}/api/submissions/{answer['id']}", headers=bearer(token)).json()["state"] == "received"
    store.set_window("worker-test", None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/api/submissions/{answer['id']}", headers=bearer(token)).json()["state"]
        if state == "queued":
            break
        time.sleep(0.5)
    assert state == "queued"


def test_a_description_is_a_pdf_of_at_most_two_pages_and_can_be_replaced(served, tmp_path):
    url, token, competition = served

    def send(content: bytes, name: str = "method.pdf") -> httpx.Response:
        return httpx.put(f"{url}/api/description", headers=bearer(token), files={"description": (name, content)},
                         timeout=60)

    three = send(pdf_bytes(3)).json()
    assert not three["accepted"] and "3 pages" in three["problems"][0]
    assert send(b"not a pdf at all").json()["problems"] == ["the description is not a PDF file; export the two "
                                                            "pages as PDF"]
    assert send(pdf_bytes(2)).json() == {"accepted": True, "problems": []}
    assert send(pdf_bytes(1)).json()["accepted"]
    from pypdf import PdfReader

    assert len(PdfReader(competition.descriptions / "alpha.pdf").pages) == 1  # the second replaced the first
    assert httpx.get(f"{url}/api/me", headers=bearer(token)).json()["description"] is True
    assert send(pdf_bytes(1), "method.docx").status_code == 400


def test_the_board_is_served_before_any_result_exists(served):
    url, _, _ = served
    answer = httpx.get(f"{url}/api/board")
    assert answer.status_code == 200 and answer.json()["state"] == "provisional"
    assert "no result.json" in httpx.get(url + "/").text


def test_each_client_is_rate_limited_on_its_own(competition):
    token = open_store(competition).add_team("alpha")
    with live_server(create_app(competition.root, WebLimits(read_per_s=0.01, read_burst=5))) as url:
        answers = [httpx.get(f"{url}/api/board") for _ in range(12)]
        codes = [answer.status_code for answer in answers]
        assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}, codes
        assert answers[-1].headers["retry-after"] == "100"
        assert httpx.get(f"{url}/api/me", headers=bearer(token)).status_code == 200  # a team has its own allowance


def test_the_organiser_sees_the_queue_and_the_teams_and_cancels_with_the_page(organiser_token, tmp_path):
    from serve.test_security import sign_in

    competition, organiser = organiser_token
    token = open_store(competition).add_team("alpha")
    with live_server(create_app(competition.root)) as url:
        queued = upload(url, token, oracle_model(tmp_path / "m.onnx").read_bytes()).json()
        client, csrf = sign_in(url, organiser)
        page = client.get("/organiser").text
        assert "queued, position 1" in page and "alpha" in page and 'id="hosts"' in page
        done = client.post(f"/organiser/submissions/{queued['id']}/cancel", data={"csrf": csrf})
        assert done.status_code == 200 and "cancelled" in done.text
        assert httpx.get(f"{url}/api/submissions/{queued['id']}", headers=bearer(token)).json()["state"] == "cancelled"
        refused = client.post(f"/organiser/submissions/{queued['id']}/rerun", data={"csrf": csrf})
        assert refused.status_code == 409 and "only a scored or failed one" in refused.text
        assert client.post(f"/organiser/submissions/{queued['id']}/rerun", data={}).status_code == 403
        team_client, _ = sign_in(url, token)
        assert team_client.get("/organiser").status_code == 401  # a team's session is not the organiser's


def wait_for(probe, seconds: float = 180.0, every: float = 0.5):
    """``probe()`` until it returns something true; that value (the test fails at the deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"still waiting after {seconds:g} s")


@pytest.mark.slow
def test_edl_serve_and_edl_submit_score_a_model_end_to_end(make_competition, tmp_path):
    import subprocess
    import sys

    from serve.web_fixtures import server_process

    competition = make_competition(repeat=2)
    token = open_store(competition).add_team("alpha")
    model = oracle_model(tmp_path / "mine.onnx")
    (tmp_path / "method.pdf").write_bytes(pdf_bytes(2))
    with server_process(competition.root) as (url, _):
        sent = subprocess.run([sys.executable, "-m", "evaluator", "submit", str(model), "--server", url, "--token",
                               token, "--description", str(tmp_path / "method.pdf")],
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "description accepted" in sent.stdout and "queued, position 1" in sent.stdout
        detail = wait_for(lambda: (d := httpx.get(f"{url}/api/submissions/1", headers=bearer(token)).json())
                          ["state"] in ("scored", "failed") and d)
        assert detail["state"] == "scored", detail
        assert [entry[0] for entry in detail["history"]] == ["received", "checked", "queued", "scoring", "scored"]
        result = detail["result"]
        assert result["accuracy"] == 0.96 and result["signed"] and result["runs"] == 2
        assert len(result["service_cpu_s"]) == 2 and all(s is not None and s >= 0 for s in result["service_cpu_s"])
        downloaded = httpx.get(f"{url}/api/submissions/1/result.json", headers=bearer(token))
        assert downloaded.content == (competition.results / detail["name"] / "result.json").read_bytes()
        board = wait_for(lambda: detail["name"] in (text := httpx.get(url + "/").text) and text)
        assert "provisional" in board
        organiser = bearer(open_store(competition).set_organiser_token())
        teams = httpx.get(f"{url}/api/organiser/teams", headers=organiser).json()
        assert [(t["name"], t["quota"]["used_total"]) for t in teams] == [("alpha", 1)]
        assert httpx.post(f"{url}/api/organiser/submissions/1/disqualify", headers=organiser,
                          json={"why": ""}).status_code == 409  # a reason is required
        out = httpx.post(f"{url}/api/organiser/submissions/1/disqualify", headers=organiser,
                         json={"why": "the graph stores the test set's answers"})
        assert out.status_code == 200, out.text
        board = wait_for(lambda: "stores the test set" in (text := httpx.get(url + "/").text) and text)
        assert "disqualified" in board
        assert httpx.post(f"{url}/api/organiser/submissions/1/rerun", headers=bearer(token)).status_code == 401
        again = httpx.post(f"{url}/api/organiser/submissions/1/rerun", headers=organiser).json()
        assert again["state"] == "queued"
        rescored = wait_for(lambda: (d := httpx.get(f"{url}/api/submissions/1", headers=bearer(token)).json())
                            ["state"] in ("scored", "failed") and d)
        assert rescored["state"] == "scored" and rescored["history"][-1][0] == "scored", rescored
        hosts = httpx.get(f"{url}/api/organiser/hosts", headers=organiser).json()
        assert hosts and hosts[0][1] == "scored results"
        failed = subprocess.run([sys.executable, "-m", "evaluator", "submit", str(tmp_path / "method.pdf"),
                                 "--server", url, "--token", token], capture_output=True, text=True, timeout=120)
        assert failed.returncode == 2 and "does not end in .onnx" in failed.stderr and "Traceback" not in failed.stderr
    print(f"\nscored end to end; server CPU seconds during each measured run: {result['service_cpu_s']}")


def test_a_scoring_in_progress_shows_its_phase_and_passes_from_the_stored_events(served, tmp_path):
    from serve.test_security import sign_in

    from evaluator.events import ImagesDone, PhaseStarted

    url, token, competition = served
    queued = upload(url, token, oracle_model(tmp_path / "m.onnx").read_bytes()).json()
    store = open_store(competition)
    claimed = store.claim("worker-test", 60.0)
    assert claimed is not None and claimed.id == queued["id"]
    store.add_event(claimed.id, PhaseStarted("scoring", total_passes=600))
    store.add_event(claimed.id, ImagesDone("scoring", 1000 * 200, 1000 * 600, 200, 600))
    detail = httpx.get(f"{url}/api/submissions/{claimed.id}", headers=bearer(token)).json()
    assert detail["state"] == "scoring" and detail["message"] == "scoring now"
    assert (detail["progress"]["phase"], detail["progress"]["done_passes"], detail["progress"]["total_passes"]) == \
        ("scoring", 200, 600)
    client, _ = sign_in(url, token)
    assert "phase scoring, passes 200 of 600" in client.get("/team").text


def test_checks_run_in_a_forked_limited_grandchild_that_is_killed_at_its_timeout(tmp_path):
    import json
    import os
    import signal

    from evaluator.config import Limits
    from evaluator.serve import checking
    from evaluator.typedjson import to_json

    good = oracle_model(tmp_path / "good.onnx")
    started = time.monotonic()
    assert checking.check_model_isolated(good, Limits()).valid
    first = time.monotonic() - started
    started = time.monotonic()
    assert checking.check_model_isolated(good, Limits()).valid  # the server is warm: no interpreter, no imports
    warm = time.monotonic() - started
    killed = checking._SERVER.run(["model", str(good), json.dumps(to_json(Limits()))], timeout_s=0.0)
    assert killed.problems == ["the check did not finish within 0 s; the file is too large or too complex to "
                               "analyse: simplify the model"]
    os.killpg(checking._SERVER._process.pid, signal.SIGKILL)  # the server itself dies: the next check restarts it
    assert checking.check_model_isolated(good, Limits()).valid
    assert checking.check_model_isolated(tmp_path / "absent.onnx", Limits()).problems == [
        "the file: no such file; pass the path of a .onnx submission"]
    checking.close_check_server()
    print(f"\ncheck: first {first:.2f} s (server start), warm {warm:.3f} s")
    assert warm < first


def test_descriptions_are_linked_from_the_board_once_it_is_published(served):
    url, token, competition = served
    assert httpx.put(f"{url}/api/description", headers=bearer(token), timeout=60,
                     files={"description": ("method.pdf", pdf_bytes(2))}).json()["accepted"]
    assert httpx.get(f"{url}/descriptions/alpha.pdf").status_code == 404  # not public before the board is
    open_store(competition).set_phase_mark("published")
    board = wait_for(lambda: (b := httpx.get(f"{url}/api/board").json())["state"] == "final" and b, 30)
    assert board["descriptions"] == ["/descriptions/alpha.pdf"]
    assert "/descriptions/alpha.pdf" in httpx.get(url + "/").text
    public = httpx.get(f"{url}/descriptions/alpha.pdf")
    assert public.status_code == 200 and public.content.startswith(b"%PDF")
    late = httpx.put(f"{url}/api/description", headers=bearer(token), files={"description": ("m.pdf", pdf_bytes(1))})
    assert late.status_code == 409 and "can no longer be replaced" in late.json()["detail"]


def test_edl_serve_and_submit_refuse_bad_input_in_one_line(cli, competition, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = cli("serve", competition.root, "--port", taken.getsockname()[1])
    assert busy.exit_code == 2 and "cannot listen there" in busy.stderr
    missing = cli("serve", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "edl competition init" in missing.stderr and "Traceback" not in missing.stderr
    model = oracle_model(tmp_path / "m.onnx")
    unreachable = cli("submit", model, "--server", "http://127.0.0.1:9", "--token", "x")
    assert unreachable.exit_code == 1 and "cannot reach http://127.0.0.1:9" in unreachable.stderr
    schemeless = cli("submit", model, "--server", "localhost:8000", "--token", "x")
    assert schemeless.exit_code == 2 and "with its scheme" in schemeless.stderr
    absent = cli("submit", tmp_path / "absent.onnx", "--server", "http://127.0.0.1:9", "--token", "x")
    assert absent.exit_code == 2 and "no such file" in absent.stderr


def test_a_second_teams_identical_file_is_held_for_the_organisers_review(organiser_token, tmp_path):
    from serve.test_security import sign_in

    competition, organiser = organiser_token
    store = open_store(competition)
    alpha, beta = store.add_team("alpha"), store.add_team("beta")
    content = oracle_model(tmp_path / "m.onnx").read_bytes()
    with live_server(create_app(competition.root)) as url:
        first, copy = upload(url, alpha, content).json(), upload(url, beta, content).json()
        assert first["message"] == "queued, position 1" and not first["held"]
        assert copy["held"] and copy["message"].startswith("held for the organiser's review: this file is the same")
        claimed = [store.claim("w", 60), store.claim("w", 60)]
        for submission in claimed:  # the worker scored both (the copy's result is the first team's)
            assert submission is not None
            store.finish(submission.id, "w", f"{submission.name}", submission.sha256, "f")
        shown = httpx.get(f"{url}/api/submissions/{copy['id']}", headers=bearer(beta)).json()
        assert shown["state"] == "scored" and shown["held"] and shown["result"] is None
        assert "held for the organiser's review" in shown["message"]
        team_client, _ = sign_in(url, beta)
        assert "held for the organiser&#39;s review" in team_client.get("/team").text
        client, _ = sign_in(url, organiser)
        page = client.get("/organiser").text
        assert f"beta-{copy['id']} is the same file as alpha-{first['id']} (teams beta and alpha)" in page
        listed = httpx.get(f"{url}/api/organiser/submissions", headers=bearer(organiser)).json()
        assert [s["same_file_as"] for s in listed if s["id"] == copy["id"]] == [f"alpha-{first['id']}"]


def test_a_revoked_or_unknown_token_is_told_to_ask_the_organiser_for_a_new_one(cli, served, tmp_path):
    url, token, competition = served
    open_store(competition).revoke_team("alpha")
    told = "unknown or revoked token: ask the organiser for a new one"
    for sent in (token, "not-a-token"):
        answer = httpx.get(f"{url}/api/me", headers=bearer(sent))
        assert answer.status_code == 401 and answer.json()["detail"] == told
    assert "Authorization: Bearer TOKEN" in httpx.get(f"{url}/api/me").json()["detail"]  # none sent: how to send it
    refused = cli("submit", oracle_model(tmp_path / "m.onnx"), "--server", url, "--token", token)
    assert refused.exit_code == 2 and told in refused.stderr


def _broken_model(tmp_path) -> bytes:
    import onnx

    model = onnx.load(oracle_model(tmp_path / "broken.onnx", layout="NCHW"))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32
    model.opset_import[0].version = 3
    return model.SerializeToString()


def test_edl_submit_waits_for_a_check_held_by_a_measurement_and_prints_its_verdict(cli, served, tmp_path):
    import threading

    url, token, competition = served
    store = open_store(competition)
    broken, valid = tmp_path / "broken-upload.onnx", oracle_model(tmp_path / "valid.onnx")
    broken.write_bytes(_broken_model(tmp_path))
    for model, code in ((broken, 2), (valid, 0)):
        store.set_window("worker-test", 120.0)
        threading.Timer(3.0, store.set_window, ("worker-test", None)).start()
        answer = cli("submit", model, "--server", url, "--token", token, "--wait-s", "60")
        assert answer.exit_code == code, answer.output
        assert "waits until the measurement in progress ends" in answer.stdout
        if code == 2:
            assert "opset 3" in answer.stderr and "int32" in answer.stderr.lower() and "failed" in answer.stdout
        else:
            assert "queued, position 1" in answer.stdout
    store.set_window("worker-test", 120.0)
    held = cli("submit", conv_model(tmp_path / "other.onnx"), "--server", url, "--token", token,
               "--wait-s", "1")
    store.set_window("worker-test", None)
    assert held.exit_code == 0 and "still not checked after 1 s" in held.stderr, held.output


def test_the_organiser_page_offers_re_run_only_where_it_is_taken(organiser_token, tmp_path):
    from serve.test_security import sign_in

    competition, organiser = organiser_token
    store = open_store(competition)
    token = store.add_team("alpha")
    with live_server(create_app(competition.root)) as url:
        broken = upload(url, token, _broken_model(tmp_path)).json()
        valid = upload(url, token, oracle_model(tmp_path / "m.onnx").read_bytes()).json()
        assert broken["state"] == "failed" and valid["state"] == "queued"
        claimed = store.claim("w", 60)
        assert claimed is not None
        store.finish(claimed.id, "w", claimed.name, claimed.sha256, "f")
        client, _ = sign_in(url, organiser)
        page = client.get("/organiser").text
        assert f"/organiser/submissions/{valid['id']}/rerun" in page
        assert f"/organiser/submissions/{broken['id']}/rerun" not in page  # a failed check: a re-run is refused
