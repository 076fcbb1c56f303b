"""The service's security: tokens and sessions, CSRF, uploads cut off while streaming, names, secrets never shown."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from builders import oracle_model
from serve.web_fixtures import bearer, live_server, rss_kib, server_process

from evaluator.serve.app import create_app
from evaluator.serve.competition import init_competition, open_store
from evaluator.serve.settings import CompetitionSettings
from evaluator.serve.web import WebLimits

MiB = 1 << 20


@pytest.fixture
def two_teams(tmp_path):
    """A served competition with teams alpha and beta and the organiser; yields a dict of what the tests need."""
    competition, organiser = init_competition(tmp_path / "cup", CompetitionSettings(name="Cup",
                                                                                    deadline="2030-01-01T00:00Z"))
    store = open_store(competition)
    tokens = {"alpha": store.add_team("alpha"), "beta": store.add_team("beta")}
    with live_server(create_app(competition.root, WebLimits(write_burst=50))) as url:
        yield {"url": url, "tokens": tokens, "organiser": organiser, "competition": competition, "store": store}


def sign_in(url: str, token: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with ``token``; returns it and the session's CSRF token."""
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=True)
    page = client.get("/signin").text
    nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    landed = client.post("/signin", data={"csrf": nonce, "token": token})
    assert landed.status_code == 200, landed.text
    found = re.search(r'name="csrf" value="([^"]+)"', landed.text)
    return client, found.group(1)


def test_another_teams_token_reads_nothing_of_a_team_and_cannot_act_for_it(two_teams, tmp_path):
    url, tokens = two_teams["url"], two_teams["tokens"]
    mine = httpx.post(f"{url}/api/submissions", headers=bearer(tokens["alpha"]), timeout=60,
                      files={"model": ("m.onnx", oracle_model(tmp_path / "m.onnx").read_bytes())}).json()
    theirs = bearer(tokens["beta"])
    for path in ("", "/result.json", "/timeline.png"):
        answer = httpx.get(f"{url}/api/submissions/{mine['id']}{path}", headers=theirs)
        assert answer.status_code == 404, (path, answer.text)
        assert mine["sha256"] not in answer.text
    assert httpx.post(f"{url}/api/submissions/{mine['id']}/cancel", headers=theirs).status_code == 404
    assert httpx.get(f"{url}/api/submissions", headers=theirs).json() == []
    assert httpx.get(f"{url}/api/submissions/{mine['id']}", headers=bearer(tokens["alpha"])).json()["state"] == "queued"
    client, _ = sign_in(url, tokens["beta"])
    page = client.get("/team").text
    assert "Team beta" in page and mine["sha256"] not in page
    assert client.get(f"/team/submissions/{mine['id']}/result.json").status_code == 404
    assert httpx.get(f"{url}/api/me", headers=bearer("not-a-token")).status_code == 401
    assert httpx.get(f"{url}/api/me", headers=bearer(two_teams["organiser"])).status_code == 401  # not a team
    assert httpx.get(f"{url}/api/me").status_code == 401


def test_forms_without_or_with_a_forged_csrf_token_are_refused(two_teams, tmp_path):
    url, tokens = two_teams["url"], two_teams["tokens"]
    content = oracle_model(tmp_path / "m.onnx").read_bytes()
    client, csrf = sign_in(url, tokens["alpha"])
    for fields in ({}, {"csrf": "forged" + csrf[6:]}, {"csrf": ""}):
        refused = client.post("/team/upload", data=fields, files={"model": ("m.onnx", content)})
        assert refused.status_code == 403 and "security token" in refused.text
    assert client.get("/api/submissions", headers=bearer(tokens["alpha"])).json() == []  # nothing was received
    assert list((two_teams["competition"].uploads / ".staging").iterdir()) == []
    stranger = httpx.Client(base_url=url)
    assert stranger.post("/signin", data={"csrf": "x", "token": tokens["alpha"]}).status_code == 403  # no cookie
    assert client.post("/signout", data={}).status_code == 403
    accepted = client.post("/team/upload", data={"csrf": csrf}, files={"model": ("m.onnx", content)})
    assert accepted.status_code == 200 and "queued, position 1" in accepted.text


def test_names_that_are_paths_or_too_long_and_non_onnx_content_are_refused_cleanly(two_teams):
    url, token = two_teams["url"], two_teams["tokens"]["alpha"]
    competition = two_teams["competition"]
    for name in ("../../etc/passwd.onnx", "..\\x.onnx", "a/b.onnx", "x" * 300 + ".onnx", "model.exe", ".onnx"):
        answer = httpx.post(f"{url}/api/submissions", headers=bearer(token), files={"model": (name, b"\x08\x07")})
        assert answer.status_code == 400, (name, answer.text)
        assert len(answer.json()["detail"]) < 300 and "Traceback" not in answer.text
    not_onnx = httpx.post(f"{url}/api/submissions", headers=bearer(token), timeout=60,
                          files={"model": ("fine.onnx", b"%PDF-1.4 this is not a model" * 10)}).json()
    assert not_onnx["state"] == "failed" and "not an ONNX model" in not_onnx["message"]
    assert str(competition.root) not in not_onnx["message"]  # the check speaks of "the file", not our path
    assert not list(competition.root.rglob("passwd*")) and not list(competition.root.rglob("fine.onnx"))


def test_tokens_are_not_stored_in_clear(two_teams):
    stored = two_teams["competition"].db.read_bytes()
    for wal in two_teams["competition"].root.glob("*.sqlite3-wal"):
        stored += wal.read_bytes()
    for token in [*two_teams["tokens"].values(), two_teams["organiser"]]:
        assert token.encode() not in stored


def test_the_organisers_paths_secret_and_key_never_appear_on_a_page_or_an_answer(two_teams, tmp_path):
    url, tokens, competition = two_teams["url"], two_teams["tokens"], two_teams["competition"]
    httpx.post(f"{url}/api/submissions", headers=bearer(tokens["alpha"]), timeout=60,
               files={"model": ("m.onnx", oracle_model(tmp_path / "m.onnx").read_bytes())})
    httpx.post(f"{url}/api/submissions", headers=bearer(tokens["alpha"]), timeout=60,
               files={"model": ("bad.onnx", b"garbage")})
    secrets = competition.secrets()
    forbidden = [str(competition.root), str(tmp_path), secrets.audit_secret, "keys/", "edl-signing",
                 secrets.signing_key.read_text().splitlines()[1]]
    team, _ = sign_in(url, tokens["alpha"])
    organiser, _ = sign_in(url, two_teams["organiser"])
    seen = [httpx.get(f"{url}{path}").text for path in ("/", "/api/board", "/api/competition", "/api/openapi.json",
                                                        "/signin")]
    seen += [team.get(path).text for path in ("/team", "/api/submissions/1")]
    seen += [httpx.get(f"{url}/api/{path}", headers=bearer(tokens["alpha"])).text
             for path in ("me", "submissions", "submissions/1", "submissions/2")]
    seen += [organiser.get("/organiser").text]
    assert "Organiser" in seen[-1] and "alpha" in seen[-1]
    for text in seen:
        for secret in forbidden:
            assert secret not in text


def announce(url: str, token: str, length: int) -> str:
    """The answer to an upload that announces ``length`` bytes and sends none of them (a raw socket)."""
    import socket
    from urllib.parse import urlparse

    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall((f"POST /api/submissions HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer "
                            f"{token}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}"
                            "\r\n\r\n").encode())
        answer = b""
        while chunk := connection.recv(65536):  # headers and body may come apart: read until the server closes
            answer += chunk
        return answer.decode("utf-8", "replace")


@pytest.mark.slow
def test_an_upload_over_the_limit_is_cut_off_while_streaming_and_memory_stays_flat(tmp_path):
    competition, _ = init_competition(tmp_path / "small", CompetitionSettings(
        name="Small", deadline="2030-01-01T00:00Z", upload_max_bytes=4 * MiB))
    token = open_store(competition).add_team("big")
    total, chunk = 512 * MiB, b"\0" * MiB
    sent = {"bytes": 0}

    def body():
        yield (b"--edlboundary\r\nContent-Disposition: form-data; name=\"model\"; filename=\"big.onnx\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n")
        for _ in range(total // len(chunk)):
            sent["bytes"] += len(chunk)
            yield chunk
        yield b"\r\n--edlboundary--\r\n"

    with server_process(competition.root, "--no-worker") as (url, process):
        before = rss_kib(process.pid)
        started = time.monotonic()
        try:  # no Content-Length: chunked, so only the streaming limit can stop it
            answer = httpx.post(f"{url}/api/submissions", content=body(), timeout=60,
                                headers=bearer(token) | {"content-type": "multipart/form-data; boundary=edlboundary"})
            status = answer.status_code
        except httpx.HTTPError:
            status = None  # the server closed the connection while the client was still sending
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        after = rss_kib(process.pid)
        declared = announce(url, token, total)
    print(f"\nupload of {total / MiB:.0f} MiB against a 4 MiB limit: the client got {sent['bytes'] / MiB:.0f} MiB "
          f"out before the cut-off ({status}, {elapsed:.2f} s); server RSS {before / 1024:.1f} -> "
          f"{after / 1024:.1f} MiB")
    assert status in (413, None)
    assert sent["bytes"] < total / 4  # the server stopped reading near the limit, not at the end
    assert after - before < 32 * 1024  # memory flat: far below the 512 MiB sent
    assert declared.startswith("HTTP/1.1 413") and "make the model smaller" in declared  # refused before any body
    assert not [p for p in competition.uploads.rglob("*") if p.is_file()]  # nothing kept of a refused upload


def test_a_revoked_team_is_signed_out_and_its_token_refused_at_once(two_teams):
    url, tokens, store = two_teams["url"], two_teams["tokens"], two_teams["store"]
    client, csrf = sign_in(url, tokens["alpha"])
    assert client.get("/team").status_code == 200
    store.revoke_team("alpha")
    assert client.get("/team").status_code == 401
    assert httpx.get(f"{url}/api/me", headers=bearer(tokens["alpha"])).status_code == 401
    refused = client.post("/team/upload", data={"csrf": csrf}, files={"model": ("m.onnx", b"x")})
    assert refused.status_code == 401
    assert httpx.get(f"{url}/api/me", headers=bearer(tokens["beta"])).status_code == 200


def test_an_upload_cut_short_by_the_client_leaves_no_file_behind(two_teams):
    import socket
    from urllib.parse import urlparse

    url, token, competition = two_teams["url"], two_teams["tokens"]["alpha"], two_teams["competition"]
    address = urlparse(url)
    head = (f"POST /api/submissions HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: multipart/form-data; boundary=cut\r\nContent-Length: 10000000\r\n\r\n"
            "--cut\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.onnx\"\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(head + b"\0" * 200_000)
        time.sleep(1.0)
        staged = [p for p in (competition.uploads / ".staging").iterdir()]
        assert len(staged) == 1 and staged[0].stat().st_size > 0  # it was being written as it came
    deadline = time.monotonic() + 10
    while list((competition.uploads / ".staging").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list((competition.uploads / ".staging").iterdir()) == []
    assert httpx.get(f"{url}/api/submissions", headers=bearer(token)).json() == []
