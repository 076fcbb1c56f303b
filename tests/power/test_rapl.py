"""CPU package and DRAM energy from a powercap tree in the kernel's own file format."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from builders import PowercapTree

from evaluator.power.base import MeterUnavailable
from evaluator.power.rapl import RaplSource


def test_rapl_counts_each_package_once_and_dram_apart(tmp_path):
    PowercapTree(tmp_path / "powercap", package_watts=[50.0, 70.0], dram_watts=10.0)
    source = RaplSource(tmp_path / "powercap")
    names = [c.name for c in source.channels()]
    assert names == ["cpu_package0_energy_j", "dram_dram0_energy_j", "cpu_package1_energy_j", "dram_dram1_energy_j"]
    assert [c.domain for c in source.channels()] == ["cpu", "dram", "cpu", "dram"]


def test_rapl_unwraps_the_counter(tmp_path):
    tree = PowercapTree(tmp_path / "pc", package_watts=[1.0], max_range_uj=1_000_000)
    tree.write(0.9)  # 900,000 uJ
    source = RaplSource(tmp_path / "pc")
    tree.write(1.5)  # wrapped: 500,000 uJ on the counter
    tree.write(1.5)
    assert source.read()[0] == pytest.approx(0.6)
    tree.write(2.2)  # 200,000 after a second wrap... 1.5 -> 2.2 is 0.7 J
    assert source.read()[0] == pytest.approx(1.3)


def test_rapl_absent_tree_is_unavailable_with_reason(tmp_path):
    with pytest.raises(MeterUnavailable, match="EDL_POWERCAP_ROOT"):
        RaplSource(tmp_path / "nothing")


def _open_rapl_as_nobody(root: Path) -> str:
    """Open a RaplSource in a forked child that dropped root (root reads any file, so tests run as nobody)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no exec, so no interpreter path needs to be reachable by nobody
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                RaplSource(root)
                message = "opened"
            except MeterUnavailable as exc:
                message = str(exc)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        return pipe.read()


def test_rapl_root_only_file_is_unavailable_with_reason():
    """Linux 5.10+ makes energy_uj readable by root only; as an ordinary user the source says so."""
    root = Path(tempfile.mkdtemp(prefix="edl-rapl-"))
    try:
        os.chmod(root, 0o755)
        PowercapTree(root / "pc", package_watts=[10.0])
        for path in (root / "pc").rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        assert _open_rapl_as_nobody(root / "pc") == "opened"
        os.chmod(root / "pc" / "intel-rapl:0" / "energy_uj", 0o400)
        assert "readable only by root" in _open_rapl_as_nobody(root / "pc")
    finally:
        shutil.rmtree(root)
