"""Results written in an older schema, read into today's Result so a past round's results stay usable.

Each step maps one schema to the next (``_v1_to_v2``, then ``_v2_to_v3``), so an old document climbs
to today's shape one change at a time. A schema-1 result (edl 0.1) is checked against its own seal
first (sha256 of its canonical JSON) and sealed anew; it carries no generalization audit (``audit``
is null), so the leaderboard ranks it only with ``--allow-unaudited``, and says so. A schema-2
result keeps its seal, its signature and the review decisions bound to it: they cover its own
canonical bytes, which the upgraded Result carries (``UpgradedFrom``), never a rewritten form.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from evaluator.config import MeterConfig, RuntimeConfig, ScoreConfig
from evaluator.errors import ResultError
from evaluator.report.integrity import canonical_bytes, canonical_json, seal
from evaluator.report.records import RunEnergy
from evaluator.report.result import SCHEMA_VERSION, Result, UpgradedFrom, result_json
from evaluator.typedjson import from_json, to_json

LEGACY_VERSION = 1
OLDER_VERSIONS = (1, 2)  # the schemas read by upgrading
LEGACY_NOTE = "read from a schema-1 result (edl 0.1): it has no generalization audit"
# schema 1's settings -> (group, option) of today's ScoreConfig
_SETTINGS = {"provider": ("runtime", "provider"), "gpu": ("runtime", "gpu"), "batch_size": ("runtime", "batch_size"),
             "prefer_nhwc": ("runtime", "prefer_nhwc"), "cuda_graph": ("runtime", "cuda_graph"),
             "overlap_batches": ("runtime", "overlap_batches"), "cudnn_search": ("runtime", "cudnn_search"),
             "tf32": ("runtime", "tf32"), "meter": ("meter", "enabled"), "idle_seconds": ("meter", "idle_s"),
             "sample_ms": ("meter", "sample_period_ms"), "cooldown_seconds": ("meter", "cooldown_s"),
             "target_temp_c": ("meter", "target_temp_c"), "temp_band_c": ("meter", "temp_band_c"),
             "passes": ("", "passes"), "warmup_passes": ("", "warmup_passes"), "tune": ("", "tune"),
             "tune_seconds": ("", "tune_window_s")}


def seal_held(document: dict[str, Any]) -> bool:
    """Schema 1's seal: sha256 of the JSON without its integrity field, keys sorted, no spaces.

    Written out here on purpose: schema 1 is frozen, whatever today's ``canonical_bytes`` becomes."""
    body = {key: value for key, value in document.items() if key != "integrity"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return (document.get("integrity") or {}).get("sha256") == digest


def _config(settings: dict[str, Any]) -> ScoreConfig:
    groups: dict[str, dict[str, Any]] = {"": {}, "runtime": {}, "meter": {}}
    for old, (group, name) in _SETTINGS.items():
        if settings.get(old) is not None:
            groups[group][name] = settings[old]
    return ScoreConfig(**groups[""], runtime=RuntimeConfig(**groups["runtime"]), meter=MeterConfig(**groups["meter"]))


def _known(cls: type, values: dict[str, Any] | None) -> dict[str, Any] | None:
    """Only the keys today's ``cls`` knows (schema 1 had a few more, e.g. per-domain peaks)."""
    if values is None:
        return None
    names = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return {key: value for key, value in values.items() if key in names}


# Schema 2's GpuState keys: schema 1's fairness records carried a few more.
_V2_GPU_STATE = ("index", "name", "uuid", "serial", "pci_bus_id", "mig_uuid", "temperature_c", "sm_clock_mhz",
                 "memory_clock_mhz", "power_limit_w", "clock_event_reasons", "other_compute_pids", "memory_used_mib",
                 "error")


def _schema_2_gpu_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if state is None else {key: value for key, value in state.items() if key in _V2_GPU_STATE}


def _run(document: dict[str, Any]) -> dict[str, Any]:

    energy = _known(RunEnergy, document["energy"]) or {}
    energy["domains"] = {name: {key: value for key, value in domain.items() if key != "reason" or value}
                         for name, domain in (energy.get("domains") or {}).items()}
    fairness = dict(document["fairness"])
    fairness["gpu_start"], fairness["gpu_end"] = (_schema_2_gpu_state(fairness.get(key))
                                                  for key in ("gpu_start", "gpu_end"))
    windows = document.get("windows", [])
    measured = next(w for w in windows if w["name"] == "measured")
    warmup = next((w for w in windows if w["name"] == "warmup"), None)
    start_c = (fairness.get("cooldown") or {}).get("end_c")
    return {"index": 1, "started_utc": document["created_utc"], "host": document["host"],
            "batch_size": document["batch_size"], "warmup_passes": document["warmup_passes"],
            "warmup_s": warmup["end_s"] - warmup["start_s"] if warmup else 0.0, "start_temp_c": start_c,
            "passes": document["passes"],
            "seconds": measured["end_s"] - measured["start_s"], "images_per_second": document["images_per_second"],
            "correct": document["correct"], "prediction_mismatch_passes": document["prediction_mismatch_passes"],
            "energy": energy, "fairness": fairness, "windows": windows,
            "samples": (document.get("files") or {}).get("samples"), "warnings": []}


def _scored(document: dict[str, Any]) -> dict[str, Any]:
    energy = document["energy"]
    summary = {key: energy.get(key) for key in ("total_j", "gpu_j", "cpu_j", "dram_j", "per_pass_j", "per_image_j")}
    summary |= {"total_domains": energy.get("total_domains", []), "missing_domains": energy.get("missing_domains", {}),
                "repeats_j": [energy.get("total_j")], "reason": energy.get("reason", "")}
    keep = ("contract", "provider", "tuning", "batch_size", "batch_size_rule", "padded_images", "passes",
            "warmup_passes", "correct", "accuracy", "category", "thresholds", "prediction_mismatch_passes", "seconds",
            "images_per_second")
    return {key: document[key] for key in keep if key in document} | {"energy": summary, "runs": [_run(document)]}


def _v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 document in schema 2's shape (field by field; its own seal is checked apart)."""
    model = dict(document["model"])
    model.setdefault("name", model["path"].rsplit("/", 1)[-1].removesuffix(".onnx"))
    upgraded: dict[str, Any] = {
        "status": document["status"], "created_utc": document["created_utc"], "model": model,
        "config": to_json(_config({"passes": document.get("passes")} | (document.get("settings") or {}))),
        "versions": document["versions"],
        "host": document.get("host") or {"hostname": "", "os": "", "cpu": "", "cpu_count": None},
        "warnings": [*document.get("warnings", []), LEGACY_NOTE],
        "data": document["data"] if "images" in document.get("data", {}) else None,
    }
    if document["status"] == "scored":
        upgraded |= _scored(document)
    else:
        upgraded |= {key: document.get(key) for key in ("reason", "elapsed_s", "timeout_s")}
    return upgraded


def _v2_to_v3_documents(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 keeps ``passes`` once, in the config: the result's and each run's copies go (they must agree)."""
    passes = document["config"].get("passes", ScoreConfig().passes)
    kept = [document.get("passes"), *(run.get("passes") for run in document.get("runs", []))]
    if any(copy is not None and copy != passes for copy in kept):
        raise ResultError(f"its passes ({kept}) differ from its config's ({passes}): not a document edl wrote; "
                          "rescore the submission")
    runs = [{key: value for key, value in run.items() if key != "passes"} for run in document.get("runs", [])]
    upgraded = {key: value for key, value in document.items() if key != "passes"}
    return upgraded | ({"runs": runs} if "runs" in document else {})


_IDENTITY = ("uuid", "name", "serial", "pci_bus_id", "mig_uuid", "index")  # GpuIdentity's keys
_V2_HOST_GPU = {"gpu": "name", "gpu_uuid": "uuid", "gpu_serial": "serial", "gpu_pci_bus_id": "pci_bus_id",
                "gpu_mig_uuid": "mig_uuid"}  # schema 2's HostRecord key -> GpuIdentity's


def _identity(values: dict[str, Any]) -> dict[str, Any] | None:
    """A GpuIdentity's JSON from schema 2's flat fields; null where schema 2 named no GPU at all."""
    identity = {key: values.get(key) for key in _IDENTITY}
    return identity if any(value is not None for value in identity.values()) else None


def _host_with_identity(host: dict[str, Any]) -> dict[str, Any]:
    flat = {new: host.get(old) for old, new in _V2_HOST_GPU.items()}
    return {key: value for key, value in host.items() if key not in _V2_HOST_GPU} | {"gpu": _identity(flat)}


def _state_with_identity(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    rest = {key: value for key, value in state.items() if key not in _IDENTITY}
    return {"identity": _identity(state)} | rest


def _v2_to_v3_gpu_identity(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 named a GPU field by field (``host.gpu``, ``host.gpu_uuid``... and each fairness state's
    ``index``, ``name``, ``uuid``...); schema 3 embeds one GpuIdentity record (``host.gpu``, ``identity``)."""
    upgraded = dict(document)
    if isinstance(upgraded.get("host"), dict):
        upgraded["host"] = _host_with_identity(upgraded["host"])
    runs = []
    for run in upgraded.get("runs") or []:
        run = dict(run)
        if isinstance(run.get("host"), dict):
            run["host"] = _host_with_identity(run["host"])
        if isinstance(run.get("fairness"), dict):
            fairness = dict(run["fairness"])
            fairness["gpu_start"], fairness["gpu_end"] = (_state_with_identity(fairness.get(key))
                                                          for key in ("gpu_start", "gpu_end"))
            run["fairness"] = fairness
        runs.append(run)
    if "runs" in upgraded:
        upgraded["runs"] = runs
    return upgraded


def _v2_to_v3(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 to 3, one function per change."""
    return _v2_to_v3_gpu_identity(_v2_to_v3_documents(document)) | {"schema_version": SCHEMA_VERSION}


def _carrying(result: Result, version: int, canonical: bytes) -> Result:
    """``result`` remembering the older document it was read from, and the bytes its seal and signature cover."""
    result.upgraded_from = UpgradedFrom(version, canonical, result_json(result))
    return result


def upgrade(document: dict[str, Any], where: str) -> Result:
    """Today's Result from an older document: schema 1 sealed anew where its own seal held; schema 2 with the
    seal and signature it was written with. A document no edl wrote is a ResultError saying why."""
    version = document.get("schema_version")
    if version == LEGACY_VERSION:
        result = from_json(Result, _v2_to_v3(_v1_to_v2(document)), where)
        result = seal(result) if seal_held(document) else result
        return _carrying(result, LEGACY_VERSION, canonical_bytes(result))
    return _carrying(from_json(Result, _v2_to_v3(document), where), 2, canonical_json(document))
