"""The GPU machine's check for issue 7, prepared to run in one short device call.

    bash ../shared/device/make-gpu-bundle.sh && cp ../shared/data/cifar10-test-first1000.npz .gpu/   # here
    # device call, carry [".gpu"]:
    source .gpu/prelude.sh && python3 bench/gpu_check.py --out $OUT --budget-s 420

Steps, most important first, each recorded as it finishes (a step that fails is recorded and the
rest go on; steps that would pass the time budget are skipped and listed):
1. `edl score` with the defaults, ResNet-20 fp32 and fp16, 200 passes; right after each, a bare
   onnxruntime loop with the same provider options over the same batches, metered only by NVML's
   total-energy counter read around its passes (an independent meter): harness J and images/s ratios.
2. `edl score --tune` for both models.
3. The issue's onnxruntime table re-measured with bare loops (50 passes; a numpy-fed row too).
4. The table's onnxruntime rows through `edl score` (200 passes).
`--steps audit` (issue 18): ResNet-20 fp32/fp16 and two memorisers through `edl score --cuda-graph` with the
audit's named checks (copy the shared training subset into .gpu/ for the training probe).
The test set is not on these machines: 10,000 real images, the shared first 1,000 tiled ten times.
Writes log.txt, summary.json, env.json, timeline.png (fp32 defaults) and results.tar.gz to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evaluator.power.gpu import Gpu
    from evaluator.report.result import Result

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [ROOT / ".gpu" / "cifar10-test-first1000.npz",
                   ROOT.parent / "shared" / "data" / "cifar10-test-first1000.npz"]
TRAIN_CANDIDATES = [ROOT / ".gpu" / "cifar10-train-first4000.npz",
                    ROOT.parent / "shared" / "data" / "cifar10-train-first4000.npz"]
FP32, FP16 = "samples/resnet20.onnx", "samples/resnet20.fp16.onnx"
OLD = ["--no-prefer-nhwc", "--no-cuda-graph", "--no-overlap-batches"]  # onnxruntime's own defaults
# Bare-loop settings named as the issue's table names them.
DRY_RUN = False  # --dry-run: the same flow on the CPU with a fake NVML, 2 passes, to test this script
PROVIDER = "cuda"
ORT_DEFAULTS = {"prefer_nhwc": False, "cuda_graph": False, "overlap": False}
DEFAULT_BATCH = 250  # edl's default batch size (evaluator.contract.spec.DEFAULT_BATCH_SIZE)
EDL_DEFAULTS = {"prefer_nhwc": True, "cuda_graph": True, "overlap": True}


def log(out: Path, text: str) -> None:
    print(text, flush=True)
    with (out / "log.txt").open("a") as handle:
        handle.write(text + "\n")


def wait_for_settled_temperature(gpu: Gpu, limit_s: float) -> float:
    """The same rule as edl's cool-down (10 s within 1 C), so both meters start from the same state."""
    history: list[tuple[float, float]] = []
    deadline = time.monotonic() + limit_s
    while True:
        now = time.monotonic()
        temperature = gpu.temperature_c()
        if temperature is None:
            raise SystemExit("the GPU has no temperature sensor: the bare loop cannot cool down as edl does")
        history.append((now, temperature))
        recent = [t for s, t in history if s >= now - 10]
        if (now - history[0][0] >= 10 and max(recent) - min(recent) <= 1) or now >= deadline:
            return float(history[-1][1])
        time.sleep(1.0)


def bare_loop(model: Path, images: np.ndarray, batch_size: int, passes: int, settings: dict, cooldown_s: float,
              feed: str = "iobinding") -> dict[str, object]:
    """The least a harness can do, written against onnxruntime alone: same options, batches and binding."""
    import onnxruntime as ort

    device = "cpu" if DRY_RUN else "cuda"

    from evaluator.config import RuntimeConfig
    from evaluator.contract.check import check_submission
    from evaluator.runtime.runner import make_batches
    from evaluator.runtime.session import cuda_options

    contract = check_submission(model).contract
    options = cuda_options(RuntimeConfig(provider="cuda", prefer_nhwc=settings["prefer_nhwc"],
                                         cuda_graph=settings["cuda_graph"]))
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    providers = ["CPUExecutionProvider"] if DRY_RUN else [("CUDAExecutionProvider", options)]
    session = ort.InferenceSession(str(model), session_options, providers=providers)
    assert DRY_RUN or session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
    batches, _ = make_batches(images, contract, batch_size)
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    out_type = np.float16 if session.get_outputs()[0].type == "tensor(float16)" else np.float32
    bindings = []
    for index, batch in enumerate(batches):
        value = ort.OrtValue.ortvalue_from_numpy(batch, device, 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(name_in, value)
        result = ort.OrtValue.ortvalue_from_shape_and_type([len(batch), 10], out_type, device, 0)
        binding.bind_ortvalue_output(name_out, result)
        run_options = ort.RunOptions()
        if settings["cuda_graph"] and not DRY_RUN:
            run_options.add_run_config_entry("gpu_graph_id", str(index))
        if settings["overlap"] and index < len(batches) - 1:
            run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        bindings.append((value, result, binding, run_options))

    def one_pass() -> np.ndarray:
        if feed == "numpy":
            scores = [session.run([name_out], {name_in: batch})[0] for batch in batches]
        else:
            for _, _, binding, run_options in bindings:
                session.run_with_iobinding(binding, run_options)
            scores = [binding.copy_outputs_to_cpu()[0] for _, _, binding, _ in bindings]
        return np.argmax(np.concatenate(scores), axis=1)[: len(images)]

    for _ in range(4):  # two plain runs, the capture, one replay
        reference = one_pass()
    from evaluator.power.gpu import NoGpu, open_gpu

    gpu = open_gpu(0)  # the board CUDA device 0 runs on, by UUID: the one edl score --gpu 0 meters
    if isinstance(gpu, NoGpu):
        raise SystemExit(f"no GPU to meter the bare loop: {gpu.reason}")
    pynvml, handle = gpu.nvml, gpu.handle
    temperature = wait_for_settled_temperature(gpu, cooldown_s) if cooldown_s else None
    start_mj, start = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.monotonic()
    mismatches = 0
    for _ in range(passes):
        mismatches += int(not np.array_equal(one_pass(), reference))
    seconds = time.monotonic() - start
    joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start_mj) / 1000
    used_mib = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    return {"j_per_pass": joules / passes, "images_per_s": passes * len(images) / seconds, "seconds": seconds,
            "mismatched_passes": mismatches, "start_temp_c": temperature, "gpu_memory_used_mib": round(used_mib)}


def bare_main(spec_json: str) -> None:
    """Child-process entry: run bare loops, one JSON line each (no CUDA context left in the parent)."""
    from evaluator.data.store import load_path

    spec = json.loads(spec_json)
    images = load_path(Path(spec["data"])).images
    for row in spec["rows"]:
        try:
            figures = bare_loop(ROOT / row["model"], images, row["batch"], row["passes"], row["settings"],
                                row.get("cooldown_s", 0), row.get("feed", "iobinding"))
        except Exception as exc:  # noqa: BLE001 - a bench records what broke and goes on
            figures = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        print(json.dumps({"row": row["name"], **figures}), flush=True)


def _scaled(extra: list[str]) -> list[str]:
    """Dry runs keep every step but run 2 passes and tune for 0.2 s."""
    if not DRY_RUN:
        return extra
    small = {"--passes": "2", "--tune-seconds": "0.2"}
    return [small.get(extra[i - 1], arg) if i else arg for i, arg in enumerate(extra)]


class Check:
    def __init__(self, out: Path, data: Path, budget_s: float) -> None:
        self.out, self.data, self.budget_s = out, data, budget_s
        self.started = time.monotonic()
        self.summary: dict[str, object] = {"edl": {}, "bare": {}, "skipped": []}

    def time_left(self, needed_s: float, name: str) -> bool:
        if time.monotonic() - self.started + needed_s > self.budget_s:
            self.summary["skipped"].append(name)
            log(self.out, f"SKIP {name}: the time budget would be exceeded")
            return False
        return True

    def save(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2))

    def bare(self, rows: list[dict], needed_s: float) -> None:
        if not self.time_left(needed_s, "bare: " + ", ".join(r["name"] for r in rows)):
            return
        if DRY_RUN:
            rows = [row | {"passes": 2, "cooldown_s": 0} for row in rows]
        spec = json.dumps({"data": str(self.data), "rows": rows})
        flags = ["--dry-run"] if DRY_RUN else []
        run = subprocess.run([sys.executable, __file__, *flags, "--bare", spec], capture_output=True, text=True,
                             cwd=ROOT)
        for line in run.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                self.summary["bare"][row.pop("row")] = row
                log(self.out, f"BARE {line}")
        if run.returncode:
            log(self.out, f"BARE process failed ({run.returncode}): {run.stderr.strip()[-800:]}")
        self.save()

    def edl(self, name: str, model: str, extra: list[str], needed_s: float, cooldown: float = 0,
            idle: float = 3) -> Result | None:
        if not self.time_left(needed_s, name):
            return None
        folder = self.out / "runs" / name
        cooldown = 0 if DRY_RUN else cooldown
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "evaluator", "score", str(ROOT / model), "--provider", PROVIDER,
                              "--data", str(self.data), "--idle-seconds", str(idle), "--cooldown", str(cooldown),
                              "--out", str(folder), "--json", *_scaled(extra)], capture_output=True, text=True,
                             cwd=ROOT)
        wall = time.monotonic() - started
        if run.returncode:
            row = {"error": run.stderr.strip().splitlines()[-3:], "wall_s": wall}
            self.summary["edl"][name] = row
            log(self.out, f"EDL {name} FAILED rc={run.returncode}: {run.stderr.strip()[-1500:]}")
            self.save()
            return None
        from evaluator.report.reader import parse_result
        from evaluator.typedjson import to_json

        result = parse_result(json.loads(run.stdout), name)
        first = result.runs[0]
        energy, provider = first.energy, result.provider
        gpu = energy.domains.get("gpu")
        row = {
            "j_per_pass": energy.per_pass_j,
            "gpu_j_per_pass": None if energy.gpu_j is None else energy.gpu_j / result.passes,
            "images_per_s": first.images_per_second,
            "seconds": first.seconds,
            "accuracy": result.accuracy,
            "batch_size": result.batch_size,
            "mismatched_passes": len(first.prediction_mismatch_passes),
            "placement": provider.placement,
            "nodes_off_provider": len(provider.nodes_off_provider),
            "cuda_graph_ran": provider.cuda_graph,
            "overlap_ran": provider.overlap_batches,
            "selection": provider.selection,
            "gpu_meter": to_json(gpu),
            "samples_in_window": energy.samples_in_window,
            "idle_w": energy.idle.watts if energy.idle else None,
            "above_idle_j": energy.above_idle_j,
            "cooldown": to_json(first.fairness.cooldown),
            "gpu_end": to_json(first.fairness.gpu_end),
            "tuning": to_json(result.tuning),
            "warnings": result.warnings,
            "wall_s": wall,
        }
        self.summary["edl"][name] = row
        brief = {k: row[k] for k in ("j_per_pass", "images_per_s", "accuracy", "batch_size", "mismatched_passes",
                                     "cuda_graph_ran", "overlap_ran", "nodes_off_provider", "wall_s")}
        log(self.out, f"EDL {name} {json.dumps(brief)}")
        self.save()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--budget-s", type=float, default=420)
    parser.add_argument("--steps", choices=["issue", "batch", "overlap", "repeats", "audit"], default="issue",
                        help="issue: the issue's figures; batch: the default batch size, ResNet-20 and -56; "
                             "repeats: score-dir --repeat 3 --reference over ResNet-20/32/56 fp32 and fp16; "
                             "audit: the audit's named checks with CUDA graphs, ResNet-20 and two memorisers")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="CPU, fake NVML, 2 passes: tests this script")
    args = parser.parse_args()
    global DRY_RUN, PROVIDER
    if args.dry_run:
        DRY_RUN, PROVIDER = True, "cpu"
        os.environ["EDL_NVML_MODULE"] = "fake_pynvml"
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
        sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    if args.bare:
        bare_main(args.bare)
        return
    from evaluator.data.store import load_path

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    source = next(path for path in DATA_CANDIDATES if path.is_file())
    subset = load_path(source)
    data = out / "runs" / "tiled10k.npz"
    data.parent.mkdir(parents=True, exist_ok=True)
    np.savez(data, x=np.tile(subset.images, (10, 1, 1, 1)), y=np.tile(subset.labels, 10))
    check = Check(out, data, args.budget_s)
    env = subprocess.run([sys.executable, "-m", "evaluator", "env", "--json"], capture_output=True, text=True,
                         cwd=ROOT)
    (out / "env.json").write_text(env.stdout or env.stderr)
    log(out, f"ENV rc={env.returncode} {env.stdout.strip()[:3000]}")

    if args.steps == "repeats":
        repeats_round(check)
    elif args.steps == "audit":
        audit_round(check)
    elif args.steps == "batch":
        batch_sweep(check)
    elif args.steps == "overlap":
        overlap_rows(check)
    else:
        issue_table(check)
    finish(check)


def batch_sweep(check: Check) -> None:
    """Which default batch size? Each model at 250, 500 and 1000 with the cool-down, 200 passes."""
    r56 = [".gpu/resnet56.onnx", ".gpu/resnet56.fp16.onnx"]
    steps = [("fp32", FP32, 250), ("fp32", FP32, 1000), ("fp32", FP32, 500), ("fp16", FP16, 250), ("fp16", FP16, 1000),
             ("fp16", FP16, 500), ("r56_fp32", r56[0], 250), ("r56_fp32", r56[0], 1000), ("r56_fp16", r56[1], 250),
             ("r56_fp16", r56[1], 1000)]
    for name, model, batch in steps[:2]:
        check.edl(f"{name}_b{batch}", model, ["--passes", "200", "--batch-size", str(batch)], 30, cooldown=10)
    check.bare([{"name": "fp32_b250_200", "model": FP32, "batch": 250, "passes": 200, "settings": EDL_DEFAULTS,
                 "cooldown_s": 10}], 30)
    for name, model, batch in steps[2:]:
        passes = "100" if name.startswith("r56") else "200"  # ResNet-56: 100 passes are a 9 s window
        if (ROOT / model).is_file():
            check.edl(f"{name}_b{batch}", model, ["--passes", passes, "--batch-size", str(batch)], 30, cooldown=10)
    check.edl("fp32_tune_2s", FP32, ["--passes", "200", "--tune", "--tune-seconds", "2"], 45, cooldown=10)


def overlap_rows(check: Check) -> None:
    """Does queueing a pass's batches without a wait help when there are no CUDA graphs? Bare, b250."""
    rows = []
    for model, tag in ((FP32, "fp32"), (FP16, "fp16")):
        for overlap in (False, True, False, True):
            settings = {"prefer_nhwc": True, "cuda_graph": False, "overlap": overlap}
            rows.append({"name": f"{tag} nhwc b250 {'overlap' if overlap else 'sync'} {len(rows)}", "model": model,
                         "batch": 250, "passes": 100, "settings": settings})
    check.bare(rows, 90)


def issue_table(check: Check) -> None:
    """The issue's figures: defaults against bare loops, the tuner, the onnxruntime table."""
    out = check.out
    # 1. The defaults through edl, each followed by a bare loop with the same settings.
    result = check.edl("fp32_defaults", FP32, ["--passes", "200"], 60, cooldown=12, idle=5)
    if result is None or result.runs[0].prediction_mismatch_passes:  # find out which new default broke
        check.edl("fp32_no_overlap", FP32, ["--passes", "50", "--no-overlap-batches"], 30)
        check.edl("fp32_no_graph", FP32, ["--passes", "50", "--no-cuda-graph"], 30)
    else:
        folder = str(out / "runs" / "fp32_defaults")
        verify = subprocess.run([sys.executable, "-m", "evaluator", "verify", folder, "--json"],
                                capture_output=True, text=True, cwd=ROOT)
        failed = [c for c in json.loads(verify.stdout or "{}").get("checks", []) if c["outcome"] != "pass"]
        log(out, f"VERIFY rc={verify.returncode} not passing: {failed} {verify.stderr.strip()[-500:]}")
    # Like with like: the bare loop runs edl's default batch (250) with edl's default settings.
    check.bare([{"name": "fp32_defaults_200", "model": FP32, "batch": DEFAULT_BATCH, "passes": 200,
                 "settings": EDL_DEFAULTS, "cooldown_s": 12}], 40)
    check.edl("fp16_defaults", FP16, ["--passes", "200"], 50, cooldown=12, idle=5)
    check.bare([{"name": "fp16_defaults_200", "model": FP16, "batch": DEFAULT_BATCH, "passes": 200,
                 "settings": EDL_DEFAULTS, "cooldown_s": 12}], 35)
    # 2. The tuner.
    check.edl("fp32_tune", FP32, ["--passes", "200", "--tune", "--tune-seconds", "1"], 75)
    check.edl("fp16_tune", FP16, ["--passes", "200", "--tune", "--tune-seconds", "1"], 70)
    # 3. The issue's onnxruntime rows, bare, 50 passes each.
    table = [
        ("fp32 default options b1000", FP32, 1000, ORT_DEFAULTS, "iobinding"),
        ("fp32 numpy fed b1000", FP32, 1000, ORT_DEFAULTS, "numpy"),
        ("fp32 default options b250", FP32, 250, ORT_DEFAULTS, "iobinding"),
        ("fp32 default options b10000", FP32, 10000, ORT_DEFAULTS, "iobinding"),
        ("fp32 nhwc", FP32, 1000, {"prefer_nhwc": True, "cuda_graph": False, "overlap": False}, "iobinding"),
        ("fp32 nhwc graphs", FP32, 1000, {"prefer_nhwc": True, "cuda_graph": True, "overlap": False}, "iobinding"),
        ("fp32 nhwc graphs overlap", FP32, 1000, EDL_DEFAULTS, "iobinding"),
        ("fp16 default options", FP16, 1000, ORT_DEFAULTS, "iobinding"),
        ("fp16 nhwc graphs", FP16, 1000, {"prefer_nhwc": True, "cuda_graph": True, "overlap": False}, "iobinding"),
        ("fp16 nhwc graphs overlap", FP16, 1000, EDL_DEFAULTS, "iobinding"),
    ]
    check.bare([{"name": name, "model": model, "batch": batch, "passes": 50, "settings": settings, "feed": feed}
                for name, model, batch, settings, feed in table], 75)
    # 4. The table's rows through edl, 200 passes.
    check.edl("fp32_ort_default_options", FP32, ["--passes", "200", *OLD], 35)
    check.edl("fp16_ort_default_options", FP16, ["--passes", "200", *OLD], 30)
    check.edl("fp32_nhwc_only", FP32, ["--passes", "200", "--no-cuda-graph", "--no-overlap-batches"], 30)
    check.edl("fp32_defaults_b250", FP32, ["--passes", "200", "--batch-size", "250"], 30)
    check.edl("fp32_defaults_b10000", FP32, ["--passes", "200", "--batch-size", "10000"], 30)


def repeats_round(check: Check) -> None:
    """Issue 13's evidence: a competition round in small, with repeats, a reference and a model under two names.

    Needs .gpu/resnet{32,56}.onnx and .fp16 copies (bench/audit_strength.py's conversion, or the converter);
    a missing one is skipped and listed. Records each result's repeats, interval and within-run CV, the
    reference's drift, and whether the twin ties with its original.
    """
    subs = check.out / "runs" / "subs"
    subs.mkdir(parents=True, exist_ok=True)
    models = {"r20_fp32": FP32, "r20_fp16": FP16, "r20_fp32_twin": FP32, "r32_fp32": ".gpu/resnet32.onnx",
              "r32_fp16": ".gpu/resnet32.fp16.onnx", "r56_fp32": ".gpu/resnet56.onnx",
              "r56_fp16": ".gpu/resnet56.fp16.onnx"}
    for name, model in models.items():
        if (ROOT / model).is_file():
            (subs / f"{name}.onnx").write_bytes((ROOT / model).read_bytes())
        else:
            check.summary["skipped"].append(f"{name}: {model} missing")
    out = check.out / "runs" / "round"
    scale = ["--passes", "2", "--cooldown", "0", "--idle-seconds", "0"] if DRY_RUN else \
        ["--passes", "100", "--cooldown", "5", "--idle-seconds", "2"]
    run = subprocess.run([sys.executable, "-m", "evaluator", "score-dir", str(subs), "--provider", PROVIDER,
                          "--data", str(check.data), "--out", str(out), "--repeat", "3", "--reference",
                          str(ROOT / FP32), "--reference-every", "4", "--timeout", "300", "--json", *scale],
                         capture_output=True, text=True, cwd=ROOT)
    log(check.out, f"ROUND rc={run.returncode} {run.stderr.strip()[-1500:]}")
    board = subprocess.run([sys.executable, "-m", "evaluator", "leaderboard", str(out), "--format", "json",
                            "--allow-mixed"], capture_output=True, text=True, cwd=ROOT)
    rows = json.loads(board.stdout or "{}").get("rows", [])
    check.summary["round"] = {"rows": rows, "batch": json.loads((out / "batch.json").read_text())
                              if (out / "batch.json").is_file() else None}
    keys = ("name", "rank", "energy_kj", "energy_kj_low", "energy_kj_high", "runs", "tied_with")
    for row in rows:
        log(check.out, f"ROW {json.dumps({k: row.get(k) for k in keys})}")
    check.save()


def audit_round(check: Check) -> None:
    """Issue 18: the audit path on the GPU (CUDA graphs, the bound buffers swapped in place, a second plain
    session for the second batch size) for ResNet-20 fp32 and fp16 and two memorisers; logs every check."""
    sys.path.insert(0, str(ROOT / "tests"))
    from memorisers import batch_recogniser, flip_invariant_neighbour

    from evaluator.data.store import load_path

    dataset = load_path(check.data)
    models = check.out / "runs" / "models"
    models.mkdir(parents=True, exist_ok=True)
    batch_recogniser(models / "batch_recogniser.onnx", dataset.images, dataset.labels)
    first = slice(0, 1000)  # the tiled set's distinct images
    flip_invariant_neighbour(models / "neighbour.onnx", dataset.images[first], dataset.labels[first])
    train = next((path for path in TRAIN_CANDIDATES if path.is_file()), None)
    extra = ["--passes", "20", "--cuda-graph", "--audit-secret", "gpu-check"]
    extra += ["--train-data", str(train)] if train is not None else []
    check.summary["audit"] = {}
    for name, model in (("audit_r20_fp32", FP32), ("audit_r20_fp16", FP16),
                        ("audit_batch_recogniser", str(models / "batch_recogniser.onnx")),
                        ("audit_neighbour", str(models / "neighbour.onnx"))):
        result = check.edl(name, model, extra, 45)
        if result is None or result.audit is None:
            continue
        audit = result.audit
        row = {"verdict": audit.verdict, "seconds": audit.seconds, "cuda_graph_ran": result.provider.cuda_graph,
               "second_session": audit.batch.second_session if audit.batch else None,
               "checks": {c.name: [c.figure, c.threshold, c.verdict, c.evidence] for c in audit.checks}}
        check.summary["audit"][name] = row
        log(check.out, f"AUDIT {name} {json.dumps(row)}")
        check.save()


def finish(check: Check) -> None:
    out = check.out
    check.data.unlink()
    for first in ("fp32_defaults", "fp32_b250"):
        if (timeline := out / "runs" / first / "timeline-1.png").is_file():
            (out / "timeline.png").write_bytes(timeline.read_bytes())
            break
    with tarfile.open(out / "results.tar.gz", "w:gz") as archive:
        archive.add(out / "runs", arcname="runs")
    subprocess.run(["rm", "-rf", str(out / "runs")], check=False)
    check.summary["elapsed_s"] = time.monotonic() - check.started
    check.save()
    log(out, f"DONE in {check.summary['elapsed_s']:.0f} s; skipped: {check.summary['skipped']}")


if __name__ == "__main__":
    main()
