"""Ranking rules, comparability, every output format, and the HTML page in a real headless Chromium."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator import leaderboard as lb
from evaluator.errors import EdlError
from evaluator.fileio import atomic_write_json
from evaluator.verify import seal


def result(accuracy: float, total_j: float | None, *, fingerprint: str = "f" * 64, passes: int = 200,
           gpu: str = "H200", domains: tuple[str, ...] = ("cpu", "gpu"), model_bytes: int = 1000,
           status: str = "scored", reason: str = "") -> dict:
    if status != "scored":
        return {"kind": "edl-result", "status": status, "reason": reason, "model": {"bytes": model_bytes}}
    return {
        "kind": "edl-result", "status": "scored", "accuracy": accuracy, "passes": passes,
        "images_per_second": 1e5, "model": {"bytes": model_bytes},
        "data": {"fingerprint": fingerprint, "images": 10000}, "provider": {"name": "cuda"}, "host": {"gpu": gpu},
        "energy": {"total_j": total_j, "total_domains": list(domains) if total_j is not None else [],
                   "reason": "" if total_j is not None else "gpu: no NVML"},
    }


def write(root: Path, docs: dict[str, dict]) -> Path:
    for name, doc in docs.items():
        atomic_write_json(root / name / "result.json", seal(doc))
    return root


def test_the_competition_example():
    """Algo1 96.5 %/150 kJ, Algo2 92.5 %/10 kJ, Algo3 98.5 %/5000 kJ."""
    entries = [lb._entry("Algo1", result(0.965, 150e3)), lb._entry("Algo2", result(0.925, 10e3)),
               lb._entry("Algo3", result(0.985, 5000e3))]
    board = lb.rank(entries)
    assert [e.name for e in board.categories[0.95]] == ["Algo1", "Algo3"]
    assert [e.name for e in board.categories[0.90]] == ["Algo2"]
    assert board.categories[0.99] == []


def test_highest_category_only_and_boundaries():
    entries = [lb._entry("exact95", result(0.95, 5.0)), lb._entry("just_below", result(0.9499, 1.0)),
               lb._entry("low", result(0.5, 0.1)), lb._entry("top", result(0.995, 100.0))]
    board = lb.rank(entries)
    assert [e.name for e in board.categories[0.95]] == ["exact95"]
    assert [e.name for e in board.categories[0.90]] == ["just_below"]
    assert [e.name for e in board.categories[0.99]] == ["top"]
    assert [e.name for e in board.unranked] == ["low"]


def test_tie_rule():
    entries = [lb._entry("b", result(0.96, 100.0004, model_bytes=10)),
               lb._entry("a", result(0.96, 100.0, model_bytes=10)),
               lb._entry("acc", result(0.97, 100.0, model_bytes=99)),
               lb._entry("small", result(0.97, 100.0, model_bytes=5))]
    board = lb.rank(entries)
    assert [e.name for e in board.categories[0.95]] == ["small", "acc", "a", "b"]


def test_incomparable_results_are_refused_with_the_difference_named():
    entries = [lb._entry("x", result(0.95, 10.0)), lb._entry("y", result(0.95, 9.0, passes=50)),
               lb._entry("z", result(0.95, 8.0, domains=("gpu",)))]
    with pytest.raises(EdlError, match=r"passes differs .*energy domains differs"):
        lb.rank(entries)
    board = lb.rank(entries, allow_mixed=True)
    assert len(board.mixed) == 2 and [e.name for e in board.categories[0.95]] == ["z", "y", "x"]


def test_failed_and_unmeasured_are_listed_with_reasons(tmp_path):
    root = write(tmp_path, {"ok": result(0.93, 10.0), "broken": result(0, 0, status="failed", reason="timed out"),
                            "nometer": result(0.97, None)})
    board = lb.rank(lb.load_results(root))
    rows = {r["name"]: r for r in lb.rows(board)}
    assert rows["broken"]["category"] == "failed" and rows["broken"]["note"] == "timed out"
    assert rows["nometer"]["category"] == "unmeasured" and "no NVML" in rows["nometer"]["note"]
    assert rows["ok"]["rank"] == 1


def test_thresholds_option():
    assert lb.parse_thresholds("90,95,99") == (0.90, 0.95, 0.99)
    with pytest.raises(EdlError, match="percentage"):
        lb.parse_thresholds("90,150")
    board = lb.rank([lb._entry("a", result(0.93, 1.0))], thresholds=lb.parse_thresholds("80,92.5"))
    assert [e.name for e in board.categories[0.925]] == ["a"]


@pytest.fixture
def example_dir(tmp_path):
    return write(tmp_path / "results", {"Algo1": result(0.965, 150e3), "Algo2": result(0.925, 10e3),
                                        "Algo3": result(0.985, 5000e3), "Algo4": result(0.80, 1e3),
                                        "Broken": result(0, 0, status="failed", reason="crashed")})


def edl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluator", *args], capture_output=True, text=True)


def test_cli_formats(example_dir, tmp_path):
    table = edl("leaderboard", str(example_dir))
    assert table.returncode == 0, table.stderr
    assert table.stdout.index("Algo1") < table.stdout.index("Algo3") and "crashed" in table.stdout
    parsed = list(csv.DictReader(io.StringIO(edl("leaderboard", str(example_dir), "--format", "csv").stdout)))
    assert [(r["category"], r["rank"], r["name"]) for r in parsed[:3]] == [
        (">= 95 %", "1", "Algo1"), (">= 95 %", "2", "Algo3"), (">= 90 %", "1", "Algo2")]
    assert parsed[1]["energy_kj"] == "5000.0" and parsed[1]["j_per_image"] == "2.5"
    markdown = edl("leaderboard", str(example_dir), "--format", "md").stdout
    assert "| >= 95 % | 1 | Algo1 |" in markdown and "Tie rule" in markdown
    document = json.loads(edl("leaderboard", str(example_dir), "--format", "json").stdout)
    assert document["rows"][0]["name"] == "Algo1"
    written = edl("leaderboard", str(example_dir), "--format", "html", "--output", str(tmp_path / "b.html"))
    assert written.returncode == 0 and (tmp_path / "b.html").read_text().startswith("<!DOCTYPE html>")
    bad = edl("leaderboard", str(example_dir), "--format", "pdf")
    assert bad.returncode == 1 and "choose one of" in bad.stderr


def test_html_is_self_contained(example_dir):
    page = lb.render_html(lb.rank(lb.load_results(example_dir)))
    assert not re.search(r"(src|href)=\"https?://", page)
    assert page.count('class="point"') == 4 and page.count('class="threshold"') == 3
    assert 'class="pareto"' in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_in_headless_chromium(example_dir, tmp_path):
    page = tmp_path / "board.html"
    page.write_text(lb.render_html(lb.rank(lb.load_results(example_dir))))
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
