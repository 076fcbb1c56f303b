"""The one home of every scoring option: defaults, validation, JSON form, comparability, CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.config import (
    SCORE,
    SCORE_DIR,
    BatchConfig,
    MeterConfig,
    RuntimeConfig,
    ScoreConfig,
    build,
    comparable_settings,
    option_fields,
    parse_thresholds,
)
from evaluator.errors import ConfigError
from evaluator.typedjson import TypedJsonError, from_json, to_json


def test_every_option_has_a_unique_name_and_flag_across_the_family():
    fields = list(option_fields(ScoreConfig)) + list(option_fields(BatchConfig))
    names = [f.name for f in fields]
    flags = [f.flag for f in fields]
    assert len(names) == len(set(names)) and len(flags) == len(set(flags))
    assert {"--sample-ms", "--idle-seconds", "--cooldown", "--warmup", "--tune-seconds", "--timeout"} <= set(flags)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ScoreConfig(passes=0), "--passes 0: must be 1 or more"),
    (lambda: ScoreConfig(warmup_passes=-1), "--warmup -1"),
    (lambda: RuntimeConfig(batch_size=0), "--batch-size 0"),
    (lambda: RuntimeConfig(cudnn_search="FASTEST"), "choose EXHAUSTIVE, HEURISTIC or DEFAULT"),
    (lambda: RuntimeConfig(provider="directml"), "--provider 'directml': choose auto, cuda, tensorrt or cpu"),
    (lambda: MeterConfig(sample_period_ms=0), "--sample-ms 0: must be more than 0"),
    (lambda: MeterConfig(idle_s=-1), "--idle-seconds -1"),
    (lambda: BatchConfig(timeout_s=0), "--timeout 0"),
])
def test_bad_values_are_refused_naming_the_flag(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make()


def test_json_round_trip_and_strict_reading(tmp_path):
    config = ScoreConfig(data=tmp_path / "d.npz", passes=7, runtime=RuntimeConfig(batch_size=64, cuda_graph=False),
                         meter=MeterConfig(sample_period_ms=5.0, target_temp_c=40.0))
    document = to_json(config)
    assert isinstance(document, dict)
    assert document["meter"]["sample_period_ms"] == 5.0 and document["data"] == str(tmp_path / "d.npz")
    assert from_json(ScoreConfig, document, "config") == config
    with pytest.raises(ConfigError, match="--passes 0"):
        from_json(ScoreConfig, document | {"passes": 0}, "config")
    with pytest.raises(TypedJsonError, match=r"config.meter: unknown field\(s\) \['sample_ms'\]"):
        from_json(ScoreConfig, document | {"meter": document["meter"] | {"sample_ms": 10}}, "config")


def test_comparable_settings_leave_out_where_files_go_and_refusal_policies(tmp_path):
    base = comparable_settings(ScoreConfig())
    assert base["passes"] == 200 and base["meter.sample_period_ms"] == 10.0
    assert "data" not in base and "meter.plot" not in base and "limits.max_nodes" not in base
    assert comparable_settings(ScoreConfig(data=tmp_path, meter=MeterConfig(plot=False))) == base
    assert comparable_settings(ScoreConfig(passes=3)) != base


def test_build_from_flat_options_uses_each_commands_defaults():
    config = build(ScoreConfig, {"passes": 5, "sample_period_ms": 2.0, "cuda_graph": False}, SCORE)
    assert config.passes == 5 and config.meter.sample_period_ms == 2.0 and config.runtime.cuda_graph is False
    assert config.meter.idle_s == MeterConfig().idle_s
    assert build(BatchConfig, {}, SCORE_DIR) == BatchConfig()


def test_thresholds_parse_from_percent():
    assert parse_thresholds("99,90,95") == (0.90, 0.95, 0.99)
    with pytest.raises(ConfigError, match="percentage"):
        parse_thresholds("90,150")
    with pytest.raises(ConfigError, match="separated by commas"):
        parse_thresholds("ninety")


def test_the_sample_period_has_one_unit_everywhere():
    assert MeterConfig(sample_period_ms=25.0).sample_period_s == 0.025
    assert [f.name for f in option_fields(ScoreConfig) if "sample" in f.name] == ["sample_period_ms"]


def test_a_path_option_reads_back_from_a_result_as_a_path():
    assert ScoreConfig().data is None  # the cached official set
    typed = from_json(ScoreConfig, to_json(ScoreConfig(data=Path("sets/test.npz"))))
    assert isinstance(typed.data, Path) and typed.data == Path("sets/test.npz")
