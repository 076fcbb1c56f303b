"""Small facts and policies that were once repeated, each written in exactly one module of evaluator/.

Read from the code, as the house rules are: a second copy of a file name, a mode or a check would
drift from the first, so each literal below may be spelled by one module only.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
from test_architecture import MODULES

from evaluator.config import METER, MeterConfig, MeterRunConfig, option_fields
from evaluator.errors import EdlError
from evaluator.fileio import probe_writable, temp_beside, temp_pattern, write_owner_only, write_probe_pattern
from evaluator.power.gpu import number_cuda_devices_as_nvml


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants: prose may name a file; only code defines one."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_by(literal: str) -> set[str]:
    """The evaluator modules whose code (not docstrings) holds a string constant containing ``literal``."""
    modules = set()
    for name, tree in MODULES.items():
        prose = _docstrings(tree)
        if any(isinstance(node, ast.Constant) and isinstance(node.value, str) and literal in node.value
               and id(node) not in prose for node in ast.walk(tree)):
            modules.add(name)
    return modules


def using_name(attribute: str) -> set[str]:
    """The evaluator modules that use ``attribute`` (``os.O_EXCL``, ``x.audit_copies``) as a name or attribute."""
    return {name for name, tree in MODULES.items()
            if any((isinstance(node, ast.Attribute) and node.attr == attribute)
                   or (isinstance(node, ast.Name) and node.id == attribute) for node in ast.walk(tree))}


@pytest.mark.parametrize(("literal", "home"), [
    ("samples.csv", "evaluator.metering.command"),  # edl meter's samples; a score's runs: report.result
    ("trt-cache", "evaluator.runtime.session"),  # TensorRT's engine cache in the result folder
    (".write-probe-", "evaluator.fileio"),
    (".tmp", "evaluator.fileio"),  # the temp files atomic writes rename into place
    ("CUDA_DEVICE_ORDER", "evaluator.power.gpu"),
    ("PCI_BUS_ID", "evaluator.power.gpu"),
    ("prints to the terminal", "evaluator.report.render"),  # --format table with --output
    ("choose one of", "evaluator.report.render"),  # an unknown --format
])
def test_a_file_name_or_policy_is_spelled_by_one_module(literal, home):
    assert spelled_by(literal) == {home}


def test_owner_only_files_are_created_in_one_place():
    assert using_name("O_EXCL") == {"evaluator.fileio"}
    assert {name for name, tree in MODULES.items() for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value == 0o600 and not isinstance(node.value, bool)} \
        == {"evaluator.fileio"}


def test_audit_off_is_decided_in_one_place():
    """``audit_copies == 0`` means the audit is off; everyone asks ``AuditConfig.off``."""
    compared = {name for name, tree in MODULES.items() for node in ast.walk(tree)
                if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                and node.left.attr == "audit_copies"}
    assert compared == {"evaluator.config"}


def test_the_edl_meter_options_come_from_the_config():
    """Names, help and defaults as `edl meter` always offered them, now declared in config.py once."""
    offered = {found.flag: (found.spec.help, found.default) for found in option_fields(MeterRunConfig, METER)}
    assert offered == {
        "--seconds": ("Meter the machine doing nothing for N seconds", None),
        "--gpu": ("CUDA device id whose board is metered (as score --gpu)", 0),
        "--sample-ms": (MeterConfig.__dataclass_fields__["sample_period_ms"].metadata["option"].help, 10.0),
        "--out": ("Where samples and the report go", Path("results/meter")),
    }
    import evaluator.cli.env as env

    assert not [node for node in ast.walk(MODULES["evaluator.cli.env"])
                if isinstance(node, ast.Constant) and node.value == "Meter the machine doing nothing for N seconds"]
    assert env.meter.__name__ == "meter"


def test_the_leaderboard_formats_are_the_ones_it_renders():
    from evaluator.cli import board
    from evaluator.report import render

    assert render.WRITTEN_FORMATS == ("csv", "md", "json", "html") and render.FORMATS == ("table", "csv", "md",
                                                                                          "json", "html")
    for fmt in render.WRITTEN_FORMATS:
        render.check_format(fmt, to_file=True)
    render.check_format("table")
    with pytest.raises(EdlError, match="--format table prints to the terminal; choose csv, md, json or html"):
        render.render({}, "table")  # FORMATS listed a table that render() refused as unknown
    with pytest.raises(EdlError, match=r"--format 'svg': choose one of table, csv, md, json, html"):
        render.check_format("svg")
    help_text = [node.value for node in ast.walk(MODULES["evaluator.cli.board"])
                 if isinstance(node, ast.Constant) and node.value == " | ".join(render.FORMATS)]
    assert help_text and board.leaderboard


def test_the_owner_only_writer_makes_0600_and_never_overwrites(tmp_path):
    path = tmp_path / "secret"
    write_owner_only(path, b"key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"key"
    with pytest.raises(FileExistsError):
        write_owner_only(path, b"another")
    assert path.read_bytes() == b"key"


def test_the_temp_and_probe_names_match_their_patterns(tmp_path):
    import fnmatch

    descriptor, name = temp_beside(tmp_path / "result.json")
    os.close(descriptor)
    assert fnmatch.fnmatchcase(Path(name).name, temp_pattern("result.json"))
    assert fnmatch.fnmatchcase(Path(name).name, temp_pattern())
    folder = tmp_path / "new" / "out"
    probe_writable(folder)
    assert folder.is_dir() and not list(folder.iterdir())
    assert fnmatch.fnmatchcase(f".write-probe-{os.getpid()}", write_probe_pattern())
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            probe_writable(tmp_path / "ro")


def test_cuda_order_defaults_to_nvmls_and_keeps_what_the_user_set():
    environ: dict[str, str] = {}
    number_cuda_devices_as_nvml(environ)
    assert environ == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    told = {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    number_cuda_devices_as_nvml(told)
    assert told == {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}


def test_a_file_name_constant_is_defined_by_one_module():
    """Two ``SAMPLES_NAME`` (``samples-{}.csv`` and ``samples.csv``) meant two files under one name."""
    defined: dict[str, set[str]] = {}
    for name, tree in MODULES.items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for leaf in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(leaf, ast.Name) and leaf.id.endswith("_NAME"):
                        defined.setdefault(leaf.id, set()).add(name)
    assert {constant: homes for constant, homes in defined.items() if len(homes) > 1} == {}
