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
from evaluator.report.render_html import render_html
from evaluator.report.result import RESULT_NAME, write_result


@pytest.fixture
def example_dir(tmp_path, template):
    results = {"Algo1": result_variant(template, 0.965, 150e3, name="Algo1"),
               "Algo2": result_variant(template, 0.925, 10e3, name="Algo2"),
               "Algo3": result_variant(template, 0.985, 5000e3, name="Algo3"),
               "Algo4": result_variant(template, 0.80, 1e3, name="Algo4"),
               "Broken": failed_variant(template, "crashed", name="Broken")}
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


@pytest.mark.slow
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
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,1800", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("EDL_KEEP_SCREENSHOT"):  # to look at it: EDL_KEEP_SCREENSHOT=/tmp/board.png pytest -k chromium
        shutil.copy(shot, os.environ["EDL_KEEP_SCREENSHOT"])


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
    for name, result in {"OnA100": result_variant(template, 0.965, 150e3, gpu="A100", name="OnA100"),
                         "OnH100": result_variant(template, 0.925, 10e3, gpu="H100", name="OnH100")}.items():
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
    said = {"table": "", "csv": "",  # pure CSV: the notes are on stderr
            "md": f"**Ranked despite differences:** {difference}.\n",
            "html": f"<p class='warning'>ranked despite: {html.escape(difference)}</p>"}
    if fmt == "json":
        assert json.loads(run.stdout)["mixed"] == [difference]
    else:
        assert said[fmt] in run.stdout
    if fmt == "csv":
        first = next(csv.DictReader(io.StringIO(run.stdout)))
        assert "ranked despite" not in run.stdout and first["name"] == "OnA100"


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

    from evaluator.report.board_rows import public_note
    from evaluator.report.leaderboard import BoardEntry

    failed = failed_variant(template, "")
    model = dataclasses.replace(failed.model, path="/srv/subs/x/model.onnx")
    reason = ("/srv/subs/x/model.onnx: external data /srv/subs/x/model.onnx.data is missing; /srv/subs/x is "
              "read-only; /srv/subs/xy/model.onnx is another one")
    entry = BoardEntry("x", dataclasses.replace(failed, model=model, reason=reason))
    assert public_note(entry) == ("x: external data model.onnx.data is missing; x is read-only; "
                                  "model.onnx is another one")  # any other absolute path: its last part only
    relative = dataclasses.replace(entry.result, model=dataclasses.replace(model, path="../../subs/x/model.onnx"),
                                   reason="/home/org/subs/x/model.onnx: not an ONNX model")
    assert public_note(BoardEntry("x", relative)) == "model.onnx: not an ONNX model"


def test_fraction_thresholds_are_a_usage_error(example_dir, cli):
    """Before: --thresholds 0.9,0.95 was read as 0.9 % and 0.95 %, and a 62 % model was ranked."""
    run = cli("leaderboard", example_dir, "--thresholds", "0.9,0.95")
    assert run.exit_code == 2 and "percentages are expected, e.g. 90,95" in run.stderr and not run.stdout


def test_csv_is_pure_csv_and_the_notes_go_to_stderr(mixed_dir, cli):
    """Before: the CSV ended with a '# ranked despite ...' line that is not CSV."""
    run = cli("leaderboard", mixed_dir, "--format", "csv", "--allow-mixed")
    assert not any(line.startswith("#") for line in run.stdout.splitlines())
    assert len(list(csv.reader(io.StringIO(run.stdout)))) == 3 and "ranked despite" in run.stderr


def test_the_terminal_table_fits_80_columns_names_whole_shared_reasons_once(tmp_path, template, cli):
    from evaluator.report.leaderboard import rank as rank_entries

    for name in ("resnet20", "resnet20.fp16", "resnet32.fp16-long-name"):
        write_result(tmp_path / "r" / name / RESULT_NAME, result_variant(template, 0.97, None, name=name))
    run = cli("leaderboard", tmp_path / "r")  # not a terminal: rich's width (80, or COLUMNS)
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    for name in ("resnet20", "resnet20.fp16", "resnet32.fp16-long-name"):
        assert any(f" {name} " in line for line in lines), name
    assert run.stdout.count("[1]") == 4 and run.stdout.count("no NVML") == 1  # said once, as footnote [1]
    assert "tie rule" not in run.stdout  # nothing is ranked
    assert not rank_entries(load_results(tmp_path / "r")).ranked


def test_a_ranked_board_at_80_columns_cuts_no_figure(tmp_path, template, cli):
    """The new-organiser trial: once something ranked, the 80-column table showed kJ '0.3…', intervals '0.18…'
    and categories 'cate…'; figures are never cut now, and only the wordy columns wrap."""
    import dataclasses

    from evaluator.report.integrity import seal

    for index, name in enumerate(("resnet20", "resnet20.fp16", "resnet20_twin", "small_cnn")):
        result = result_variant(template, 0.915 - index * 0.001, 312.345 + index, name=name, official=False)
        energy = dataclasses.replace(result.energy, total_j_interval=[180.123 + index, 444.567 + index])
        write_result(tmp_path / "r" / name / RESULT_NAME, seal(dataclasses.replace(result, energy=energy)))
    run = cli("leaderboard", tmp_path / "r")
    assert run.exit_code == 0, run.stderr
    table = run.stdout.split("tie rule")[0]
    assert "…" not in table, run.stdout
    assert max(len(line) for line in run.stdout.splitlines()) <= 80, run.stdout
    assert "0.3123" in table and "0.1801-0.4446" in table, run.stdout
    assert "tied at rank 1: resnet20, resnet20.fp16, resnet20_twin, small_cnn" in run.stdout.replace("\n    ", " ")


def test_unofficial_data_is_said_in_the_category(tmp_path, template):
    write_result(tmp_path / "u" / RESULT_NAME, result_variant(template, 0.96, 10.0, name="u", official=False))
    board = rank(load_results(tmp_path))
    for fmt in ("csv", "md", "json", "html"):
        from evaluator.report.render import render

        assert ">= 95 % (unofficial data)" in html.unescape(render(board, fmt)), fmt


def test_intervals_never_go_below_zero_and_two_runs_warn():
    from evaluator.report.uncertainty import interval

    low, high, _ = interval([10.0, 80.0], [0.0])  # --repeat 2: t(0.975, 1) = 12.7
    assert low == 0.0 and high > 80.0  # before: 45 - 444.6 = -399.6 J


def test_scatter_ticks_are_round_labels_apart_bars_inside(tmp_path, template):
    import dataclasses

    from evaluator.report.integrity import seal
    from evaluator.report.render_html import nice_ticks

    assert nice_ticks(60.2, 100.0) == [60, 70, 80, 90, 100] and nice_ticks(0, 0.37) == [0, 0.1, 0.2, 0.3, 0.4]
    for name, joules in (("close_a", 1000.0), ("close_b", 1010.0), ("far", 3000.0)):
        result = result_variant(template, 0.95, joules, name=name)
        energy = dataclasses.replace(result.energy, total_j_interval=[joules * 0.5, joules * 1.5])
        write_result(tmp_path / "s" / name / RESULT_NAME, seal(dataclasses.replace(result, energy=energy)))
    page = render_html({"": rank(load_results(tmp_path / "s"))})
    labels = [(float(x), float(y)) for x, y in re.findall(r'class="label" x="([\d.]+)" y="([\d.]+)"', page)]
    boxes = [(x, y - 13, x + 6.6 * 7, y) for x, y in labels]  # 7 characters at most, 13 px high
    assert len(labels) == 3 and not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                                        for i, a in enumerate(boxes) for b in boxes[i + 1:])  # before: overlapped
    assert 'class="leader"' in page
    bars = [float(v) for v in re.findall(r'class="errorbar" d="M([\d.]+),', page)]
    bar_ends = [float(v) for v in re.findall(r'H([\d.]+)M', page)]
    assert min(bars) >= 60 and max(bar_ends) <= 720 - 60  # inside the plotting area
    ticks = re.findall(r'class="xtick"[^>]*>([^<]+)<', page)
    assert all(float(t.replace(",", "")) % 1 == 0 for t in ticks), ticks
    assert page.count("Dashed lines") == 1
    write_result(tmp_path / "f" / "broken" / RESULT_NAME, failed_variant(template, "crashed", name="broken"))
    empty = render_html({"": rank(load_results(tmp_path / "f"))})
    assert "No measured submissions" in empty and "Dashed lines" not in empty  # before: the caption stood alone
