"""One thermal state for a whole batch: the GPU temperature every run cools to before its idle baseline."""

from __future__ import annotations

import dataclasses

from evaluator.config import ScoreConfig
from evaluator.report.batch_record import ThermalRecord
from evaluator.scoring.cooldown import GpuWatch, cool_down


def batch_target(config: ScoreConfig) -> ThermalRecord:
    """``--target-temp`` when given; else the idle temperature, settled once, before the first scoring."""
    band = config.meter.temp_band_c
    if config.meter.target_temp_c is not None:
        return ThermalRecord(config.meter.target_temp_c, "--target-temp", band)
    watch = GpuWatch(config.runtime.gpu)
    if watch.reason:
        return ThermalRecord(None, f"no GPU temperature here ({watch.reason}): each run cools as configured", band)
    settle = dataclasses.replace(config.meter, target_temp_c=None)
    record = cool_down(watch, settle)
    if record.end_c is None:
        return ThermalRecord(None, f"the GPU temperature could not be read ({record.skipped})", band)
    how = "settled" if record.reached else f"not settled within --cooldown {config.meter.cooldown_s:g} s"
    return ThermalRecord(record.end_c, f"the idle temperature before the first scoring ({how})", band)
