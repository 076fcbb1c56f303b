"""Every leaderboard format, through the CLI, and the HTML page in a real headless Chromium."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from builders import failed_variant, result_variant

from evaluator.report.leaderboard import load_results, rank
from evaluator.report.render import render_html
from evaluator.report.result import RESULT_NAME, write_result


@pytest.fixture
def example_dir(tmp_path, template):
    results = {"Algo1": result_variant(template, 0.965, 150e3), "Algo2": result_variant(template, 0.925, 10e3),
               "Algo3": result_variant(template, 0.985, 5000e3), "Algo4": result_variant(template, 0.80, 1e3),
               "Broken": failed_variant(template, "crashed")}
    for name, result in results.items():
        write_result(tmp_path / "results" / name / RESULT_NAME, result)
    return tmp_path / "results"


def test_cli_formats(example_dir, tmp_path, cli):
    table = cli("leaderboard", example_dir)
    assert table.exit_code == 0, table.stderr
    assert table.stdout.index("Algo1") < table.stdout.index("Algo3") and "crashed" in table.stdout
    parsed = list(csv.DictReader(io.StringIO(cli("leaderboard", example_dir, "--format", "csv").stdout)))
    assert [(r["category"], r["rank"], r["name"]) for r in parsed[:3]] == [
        (">= 95 %", "1", "Algo1"), (">= 95 %", "2", "Algo3"), (">= 90 %", "1", "Algo2")]
    images = 200 * 2  # the template's 200 images, 2 passes
    assert parsed[1]["energy_kj"] == "5000.0" and float(parsed[1]["j_per_image"]) == pytest.approx(5e6 / images)
    markdown = cli("leaderboard", example_dir, "--format", "md").stdout
    assert "| >= 95 % | 1 | Algo1 |" in markdown and "Tie rule" in markdown
    document = json.loads(cli("leaderboard", example_dir, "--format", "json").stdout)
    assert document["rows"][0]["name"] == "Algo1"
    written = cli("leaderboard", example_dir, "--format", "html", "--output", tmp_path / "b.html")
    assert written.exit_code == 0 and (tmp_path / "b.html").read_text().startswith("<!DOCTYPE html>")
    bad = cli("leaderboard", example_dir, "--format", "pdf")
    assert bad.exit_code == 1 and "choose one of" in bad.stderr
    thresholds = list(csv.DictReader(io.StringIO(cli("leaderboard", example_dir, "--thresholds", "80,96",
                                                     "--format", "csv").stdout)))
    assert [r["name"] for r in thresholds if r["category"] == ">= 80 %"] == ["Algo4", "Algo2"]


def test_html_is_self_contained(example_dir):
    page = render_html({"": rank(load_results(example_dir))})
    assert not re.search(r"(src|href)=\"https?://", page)
    assert page.count('class="point"') == 4 and page.count('class="threshold"') == 3
    assert 'class="pareto"' in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_in_headless_chromium(example_dir, tmp_path):
    page = tmp_path / "board.html"
    page.write_text(render_html({"": rank(load_results(example_dir))}))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    tables = re.findall(r'<table class="board" data-category="([^"]+)">(.*?)</table>', dom.stdout, re.S)
    row = re.compile(r"<tr><td>(\d*)</td><td>([^<]+)</td>")
    by_category = {html.unescape(category): row.findall(body) for category, body in tables}
    assert by_category[">= 95 %"] == [("1", "Algo1"), ("2", "Algo3")]
    assert by_category[">= 90 %"] == [("1", "Algo2")]
    assert [name for _, name in by_category["failed"]] == ["Broken"]
    shot = tmp_path / "board.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_output_to_an_unwritable_place_is_one_line(example_dir, tmp_path, cli):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    run = cli("leaderboard", example_dir, "--format", "csv", "--output", blocker / "board.csv")
    assert run.exit_code == 1 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [f"error: cannot write {blocker / 'board.csv'} ({blocker} is a file, not a "
                                       "folder); give --output a file in a folder you can write to"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_into_a_read_only_folder_is_one_line(example_dir, tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    run = cli("leaderboard", example_dir, "--format", "md", "--output", locked / "board.md")
    assert run.exit_code == 1 and run.stderr.splitlines() == [
        f"error: cannot write {locked / 'board.md'} (Permission denied); give --output a file in a folder you can "
        "write to"]


@pytest.fixture
def mixed_dir(tmp_path, template):
    for name, result in {"OnA100": result_variant(template, 0.965, 150e3, gpu="A100"),
                         "OnH100": result_variant(template, 0.925, 10e3, gpu="H100")}.items():
        write_result(tmp_path / "mixed" / name / RESULT_NAME, result)
    return tmp_path / "mixed"


@pytest.mark.parametrize("fmt", ["table", "csv", "md", "json", "html"])
def test_allow_mixed_is_said_in_every_format(mixed_dir, cli, fmt):
    refused = cli("leaderboard", mixed_dir, "--format", fmt)
    assert refused.exit_code == 1 and "--allow-mixed" in refused.stderr
    run = cli("leaderboard", mixed_dir, "--format", fmt, "--allow-mixed")
    assert run.exit_code == 0, run.stderr
    difference = "GPU model differs (A100: OnA100; H100: OnH100)"
    assert run.stderr.splitlines() == [f"warning: ranked despite: {difference}"]
    said = {"table": "", "csv": f"# ranked despite: {difference}\n",
            "md": f"**Ranked despite differences:** {difference}.\n",
            "html": f"<p class='warning'>ranked despite: {html.escape(difference)}</p>"}
    if fmt == "json":
        assert json.loads(run.stdout)["mixed"] == [difference]
    else:
        assert said[fmt] in run.stdout
    if fmt == "csv":
        first = next(csv.DictReader(io.StringIO(run.stdout)))
        assert run.stdout.endswith(said["csv"]) and first["name"] == "OnA100"


def test_a_failure_note_names_the_submission_not_the_organisers_folders(tmp_path, cli):
    """A real failure from score-dir: the checker's reason starts with the model's absolute path."""
    from builders import oracle_images, save_npz

    submissions, results = tmp_path / "home" / "org" / "subs", tmp_path / "results"
    submissions.mkdir(parents=True)
    (submissions / "x.onnx").write_bytes(b"not a model")
    data = save_npz(tmp_path / "d.npz", *oracle_images(100, correct=90))
    cli("score-dir", submissions, "--data", data, "--out", results)
    recorded = json.loads((results / "x" / RESULT_NAME).read_text())
    assert recorded["reason"].startswith(f"{submissions / 'x.onnx'}: not an ONNX model"), recorded["reason"]
    for fmt in ("table", "csv", "md", "json", "html"):
        run = cli("leaderboard", results, "--format", fmt)
        assert run.exit_code == 0, run.stderr
        assert str(tmp_path) not in run.stdout and "x: not an ONNX model" in run.stdout, (fmt, run.stdout)


def test_public_note_keeps_file_names_and_drops_folders(template):
    import dataclasses

    from evaluator.report.leaderboard import Entry
    from evaluator.report.render import public_note

    failed = failed_variant(template, "")
    model = dataclasses.replace(failed.model, path="/srv/subs/x/model.onnx")
    reason = ("/srv/subs/x/model.onnx: external data /srv/subs/x/model.onnx.data is missing; /srv/subs/x is "
              "read-only; /srv/subs/xy/model.onnx is another one")
    entry = Entry("x", dataclasses.replace(failed, model=model, reason=reason))
    assert public_note(entry) == ("x: external data model.onnx.data is missing; x is read-only; "
                                  "model.onnx is another one")  # any other absolute path: its last part only
    relative = dataclasses.replace(entry.result, model=dataclasses.replace(model, path="../../subs/x/model.onnx"),
                                   reason="/home/org/subs/x/model.onnx: not an ONNX model")
    assert public_note(Entry("x", relative)) == "model.onnx: not an ONNX model"
