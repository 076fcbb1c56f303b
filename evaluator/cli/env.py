"""``edl env`` and ``edl meter``: what this machine can measure, and measuring anything with it."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from evaluator.cli.console import fmt, out, print_json, say
from evaluator.cli.options import JsonOption, config_options
from evaluator.config import ENV, METER, MeterRunConfig, RuntimeConfig
from evaluator.errors import UsageError
from evaluator.typedjson import to_json


def _row(item: str, ok: bool | None, detail: str) -> dict[str, str]:
    return {"item": item, "status": {True: "ok", False: "unavailable", None: "partial"}[ok], "detail": detail}


def _gpu_rows(cuda_device: int) -> list[dict[str, str]]:
    """The board CUDA device ``cuda_device`` runs on (as ``score --gpu``), and what NVML meters of it."""
    from evaluator.power.base import MeterUnavailable
    from evaluator.power.gpu import NoGpu, open_gpu
    from evaluator.power.nvml import NvmlSource

    gpu = open_gpu(cuda_device)
    if isinstance(gpu, NoGpu):
        return [_row("gpu energy (nvml)", False, gpu.reason)]
    try:
        source = NvmlSource((gpu.identity,))
    except MeterUnavailable as exc:
        gpu.close()
        return [_row("gpu energy (nvml)", False, str(exc))]
    identity, meter = gpu.identity, source.gpus[0]
    uuid = f", {identity.uuid}" if identity.uuid else ""
    rows = [_row(f"gpu {cuda_device}", True, f"{identity.name}, driver {gpu.driver_version()}{uuid}"),
            _row("nvml energy counter", meter.energy_counter,
                 "nvmlDeviceGetTotalEnergyConsumption" if meter.energy_counter else "; ".join(meter.notes)),
            _row("nvml power", meter.power_method == "instant",
                 {"instant": "NVML_FI_DEV_POWER_INSTANT", "average": "nvmlDeviceGetPowerUsage (1 s average)",
                  "none": "no power reading"}[meter.power_method])]
    source.close()
    gpu.close()
    if identity.name:
        rows.append(_row("ray resources", True, f"ray start ... --resources '{ray_resources(identity.name)}'"))
    return rows


def ray_resources(gpu_name: str) -> str:
    """What this host offers a Ray cluster for score-dir --backend ray: itself, and its GPU kind."""
    from evaluator.batch.ray_backend import GPU_KIND_PREFIX, HOST_RESOURCE, kind_slug

    return json.dumps({HOST_RESOURCE: 1, GPU_KIND_PREFIX + kind_slug(gpu_name): 1})


def environment_rows(gpu: int = 0) -> list[dict[str, str]]:  # gpu: a CUDA device id, as score --gpu
    """Every meter and provider, and for anything missing, why and how to fix it."""
    import onnxruntime as ort

    from evaluator.power.base import MeterUnavailable
    from evaluator.power.rapl import RaplSource, powercap_root
    from evaluator.runtime.providers import cuda_unavailable_reason
    from evaluator.scoring.hostinfo import cpu_model

    rows = [_row("cpu", True, cpu_model()), *_gpu_rows(gpu)]
    root = powercap_root()
    try:
        rapl = RaplSource(root)
        zones = ", ".join(f"{z.label} ({z.path.name}, wraps at {z.max_range_uj / 1e6:,.0f} J)" for z in rapl.zones)
        rows.append(_row("cpu energy (rapl)", True, f"{root}: {zones}"))
    except MeterUnavailable as exc:
        rows.append(_row("cpu energy (rapl)", False, str(exc)))
    reason = cuda_unavailable_reason()
    rows.append(_row("onnxruntime", True, f"{ort.__version__}; providers {', '.join(ort.get_available_providers())}"))
    rows.append(_row("cuda provider", reason is None, reason or "can be created"))
    return rows


@config_options(ENV)
def env(runtime: RuntimeConfig, as_json: JsonOption = False) -> None:
    """What this machine can measure and run, and for anything missing, why and how to fix it."""
    from evaluator.scoring.hostinfo import versions

    rows = environment_rows(runtime.gpu)
    if as_json:
        print_json({"rows": rows, "versions": to_json(versions())})
        return
    table = Table(title="edl environment", show_header=True)
    table.add_column("item")
    table.add_column("status")
    table.add_column("detail / fix", overflow="fold")
    for row in rows:
        table.add_row(row["item"], row["status"], row["detail"])
    out.print(table)


@config_options(METER)
def meter(ctx: typer.Context, config: MeterRunConfig, as_json: JsonOption = False) -> None:
    """Meter any command (`edl meter -- CMD ...`) or the idle machine (`edl meter --seconds N`)."""
    from evaluator.metering.command import meter_command

    command = list(ctx.args)
    if bool(command) == (config.seconds is not None):
        raise UsageError("give either a command after `--` or --seconds N, not both and not neither")
    report = meter_command(command, config.seconds, config.gpu, config.meter.sample_period_s, config.out_dir)
    if as_json:
        print_json(to_json(report))
    else:
        energy = report.energy
        say(f"window {energy.window_s or 0:.3f} s, exit code {report.exit_code}")
        say(f"total {fmt(energy.total_j, ' J')}  (gpu {fmt(energy.gpu_j, ' J')}, cpu {fmt(energy.cpu_j, ' J')}, "
            f"dram {fmt(energy.dram_j, ' J')})")
        for domain, reason in energy.missing_domains.items():
            say(f"{domain}: unavailable: {reason}")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
