"""The scorer's findings as result records: the one place where domain objects become document parts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from evaluator.config import ScoreConfig
from evaluator.contract.check import CheckReport
from evaluator.contract.spec import Contract
from evaluator.data.dataset import Dataset
from evaluator.fileio import sha256_file
from evaluator.power.analysis import Window
from evaluator.power.gpu import GpuSnapshot
from evaluator.report.records import DataRecord, WindowRecord, utc_now
from evaluator.report.result import (
    ContractRecord,
    GpuState,
    GraphFinding,
    ModelRecord,
    ProviderRecord,
    Result,
    Versions,
)
from evaluator.runtime.session import SessionInfo
from evaluator.scoring.hostinfo import host


def path_from(folder: Path, path: Path) -> str:
    """``path`` as seen from ``folder`` (the result's folder): a result moved with its submissions still finds them."""
    return os.path.relpath(Path(path).resolve(), Path(folder).resolve())


def model_record(name: str, path: Path, report: CheckReport, out_dir: Path) -> ModelRecord:
    return ModelRecord(name=name, path=path_from(out_dir, path), sha256=report.sha256, bytes=report.bytes,
                       parameters=report.parameters, opsets=report.opsets, producer=report.producer,
                       evidence=[GraphFinding(**dataclasses.asdict(finding)) for finding in report.evidence])


def data_record(dataset: Dataset) -> DataRecord:
    return DataRecord(fingerprint=dataset.fingerprint, images=dataset.count, official=dataset.official,
                      source=dataset.source)


def contract_record(contract: Contract) -> ContractRecord:
    return ContractRecord(**dataclasses.asdict(contract))


def provider_record(info: SessionInfo, requested: str, gpu: int) -> ProviderRecord:
    return ProviderRecord(
        name=info.provider, requested=requested, selection=info.selection, providers=info.providers,
        gpu=gpu if info.on_gpu else None, provider_options=info.provider_options,
        session_options=info.session_options, placement=info.placement, nodes_off_provider=info.nodes_off_provider,
        cuda_graph=info.cuda_graph, overlap_batches=info.overlap_batches, environment=info.environment)


def gpu_record(snapshot: GpuSnapshot | None, error: str = "") -> GpuState | None:
    if error:
        return GpuState(error=error)
    if snapshot is None:
        return None
    return GpuState(**{found.name: getattr(snapshot, found.name) for found in dataclasses.fields(snapshot)})


def window_records(windows: list[Window]) -> list[WindowRecord]:
    return [WindowRecord(w.name, w.start_s, w.end_s) for w in windows]


def failed_result(name: str, model: Path | None, reason: str, config: ScoreConfig, data: DataRecord | None,
                  versions: Versions, out_dir: Path, elapsed_s: float = 0.0, timeout_s: float | None = None) -> Result:
    """The result of a submission that could not be scored: who, with what, and why, in one line."""
    record = ModelRecord(name=name, path=path_from(out_dir, model) if model else name)
    if model is not None and model.is_file():
        record.sha256, record.bytes = sha256_file(model), model.stat().st_size
    return Result(status="failed", created_utc=utc_now(), model=record, data=data, config=config,
                  versions=versions, host=host(), reason=reason, elapsed_s=elapsed_s, timeout_s=timeout_s)
