"""``edl env``: what can be measured and run here, and what to do about anything missing."""

from __future__ import annotations

from evaluator.power.base import MeterUnavailable
from evaluator.power.nvml import NvmlSource, driver_version, gpu_state, nvml_module_name
from evaluator.power.rapl import RaplSource, powercap_root


def _row(item: str, ok: bool | None, detail: str) -> dict[str, str]:
    status = {True: "ok", False: "unavailable", None: "partial"}[ok]
    return {"item": item, "status": status, "detail": detail}


def environment_report(gpu: int = 0, nvml_module: str | None = None) -> dict[str, object]:
    nvml_module = nvml_module or nvml_module_name()
    import onnxruntime as ort

    from evaluator.hostinfo import cpu_model, versions
    from evaluator.runtime import cuda_unavailable_reason

    rows = [_row("cpu", True, cpu_model())]
    try:
        source = NvmlSource((gpu,), nvml_module)
        state = gpu_state(source.nvml, gpu)
        meter = source.gpus[0]
        rows.append(_row(f"gpu {gpu}", True, f"{state['name']}, driver {driver_version(source.nvml)}"))
        rows.append(_row("nvml energy counter", meter.energy_counter,
                         "nvmlDeviceGetTotalEnergyConsumption" if meter.energy_counter else "; ".join(meter.notes)))
        rows.append(_row("nvml power", meter.power_method == "instant",
                         {"instant": "NVML_FI_DEV_POWER_INSTANT", "average": "nvmlDeviceGetPowerUsage (1 s average)",
                          "none": "no power reading"}[meter.power_method]))
        source.close()
    except MeterUnavailable as exc:
        rows.append(_row("gpu energy (nvml)", False, str(exc)))
    root = powercap_root()
    try:
        rapl = RaplSource(root)
        zones = ", ".join(f"{z.label} ({z.path.name}, wraps at {z.max_range_uj / 1e6:,.0f} J)" for z in rapl.zones)
        rows.append(_row("cpu energy (rapl)", True, f"{root}: {zones}"))
    except MeterUnavailable as exc:
        rows.append(_row("cpu energy (rapl)", False, str(exc)))
    providers = ort.get_available_providers()
    reason = cuda_unavailable_reason()
    rows.append(_row("onnxruntime", True, f"{ort.__version__}; providers {', '.join(providers)}"))
    rows.append(_row("cuda provider", reason is None, reason or "can be created"))
    return {"rows": rows, "versions": versions()}
