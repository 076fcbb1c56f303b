"""The ``edl`` command line. The only place that prints, and that turns errors into exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from evaluator import __version__
from evaluator.errors import EdlError, SubmissionError

app = typer.Typer(
    help="edl: score CIFAR-10 ONNX submissions by accuracy and energy (CPU + GPU joules).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="The pinned CIFAR-10 test set.", no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Test set: cifar-10-python.tar.gz, cifar-10-batches-py/, the binary version, or .npz"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document on stdout and nothing else.")]


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "unavailable" if value is None else f"{value:,.{digits}f}{unit}"


class RichProgress:
    """Progress on stderr, so ``--json`` output stays clean."""

    def __init__(self, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not enabled,
        )
        self._task = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(name, total=total, rate="")

    def advance(self, images: int = 0) -> None:
        if self._task is None:
            return
        self._progress.advance(self._task, images)
        task = self._progress.tasks[-1]
        if task.speed:
            self._progress.update(self._task, rate=f"{task.speed:,.0f} img/s")

    def submissions(self, name: str, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("submissions", total=total, rate="")
        self._progress.update(self._task, completed=done, total=total, rate=name)

    def download(self, done: int, total: int | None) -> None:
        if self._task is None:
            self.phase("download", total)
        self._progress.update(self._task, completed=done, total=total)


@app.command()
def check(
    model: Annotated[Path, typer.Argument(help="The .onnx submission")],
    as_json: JsonOption = False,
    max_file_bytes: MaxFileOption = 2 << 30,
    max_initializer_bytes: MaxInitOption = 2 << 30,
    max_nodes: MaxNodesOption = 100_000,
) -> None:
    """Validate a submission without scoring it: exit 0 when valid, 2 when not."""
    from evaluator.submission import Limits, check_submission

    report = check_submission(model, Limits(max_file_bytes, max_initializer_bytes, max_nodes))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"{model.name}: {'valid' if report.valid else 'INVALID'}", show_header=False)
        table.add_row("sha256", report.sha256 or "-")
        table.add_row("size", f"{report.bytes:,} bytes")
        opsets = ", ".join(f"{domain} {version}" for domain, version in report.opsets.items())
        table.add_row("ir / opsets", f"{report.ir_version} / {opsets}")
        table.add_row("domains used", ", ".join(report.domains_used) or "-")
        table.add_row("nodes / parameters", f"{report.node_count:,} / {report.parameters:,}")
        table.add_row("inputs", "\n".join(report.inputs) or "-")
        table.add_row("outputs", "\n".join(report.outputs) or "-")
        if report.external_data:
            table.add_row("external data", ", ".join(report.external_data))
        if report.contract:
            c = report.contract
            size, rule = c.batch_size(None)
            table.add_row("contract", f"{c.input_dtype} {c.layout} -> {c.output_kind}")
            table.add_row("batch policy", f"{size} ({rule})")
        out.print(table)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    for problem in report.problems:
        err.print(f"error: {problem}", markup=False, highlight=False)
    raise typer.Exit(0 if report.valid else 2)


def _print_score(result: dict) -> None:
    energy = result["energy"]
    table = Table(title=f"{Path(result['model']['path']).name}", show_header=False)
    table.add_row("accuracy", f"{result['accuracy']:.2%} ({result['correct']}/{result['data']['images']})")
    category = result["category"]
    table.add_row("category", "unranked" if category is None else f"{category:.0%}")
    table.add_row("provider", f"{result['provider']['name']} ({result['provider']['selection']})")
    table.add_row("batch / passes", f"{result['batch_size']} ({result['batch_size_rule']}) / {result['passes']}")
    table.add_row("measured", f"{result['seconds']:.3f} s, {result['images_per_second']:,.0f} images/s")
    table.add_row("energy total", _fmt(energy.get("total_j"), " J"))
    for domain in ("gpu", "cpu", "dram"):
        value = energy.get(f"{domain}_j")
        reason = (energy.get("domains") or {}).get(domain, {}).get("reason") or energy.get("reason", "")
        table.add_row(f"  {domain}", _fmt(value, " J") if value is not None else f"unavailable: {reason}")
    if energy.get("per_pass_j") is not None:
        table.add_row("per pass / per image", f"{energy['per_pass_j']:.3f} J / {energy['per_image_j'] * 1e3:.4f} mJ")
        table.add_row("mean power", _fmt(energy.get("mean_w"), " W", 1))
    if (idle := energy.get("idle")) and idle.get("total_w") is not None:
        table.add_row("idle / above idle", f"{idle['total_w']:.1f} W / {_fmt(energy.get('above_idle_j'), ' J')}")
    table.add_row("data", f"{result['data']['fingerprint'][:16]}… official={result['data']['official']}")
    out.print(table)


NhwcOption = Annotated[bool, typer.Option(help="CUDA: prefer channels-last (NHWC) kernels")]
GraphOption = Annotated[bool, typer.Option(help="CUDA: capture one CUDA graph per resident batch (refused: without)")]
OverlapOption = Annotated[bool, typer.Option(help="CUDA: queue a pass's batches, one synchronisation per pass")]
CudnnOption = Annotated[str, typer.Option(help="CUDA: cuDNN algorithm search EXHAUSTIVE | HEURISTIC | DEFAULT")]
Tf32Option = Annotated[bool, typer.Option(help="Allow TF32 math (--no-tf32 sets NVIDIA_TF32_OVERRIDE=0)")]
MaxFileOption = Annotated[int, typer.Option(help="Largest accepted .onnx file (bytes)")]
MaxInitOption = Annotated[int, typer.Option(help="Most bytes of weights accepted")]
MaxNodesOption = Annotated[int, typer.Option(help="Most graph nodes accepted")]
ProviderOption = Annotated[str, typer.Option(help="auto | cuda | tensorrt | cpu (auto: CUDA when it can run)")]
GpuOption = Annotated[int, typer.Option(help="GPU device id to run on and meter")]
PassesOption = Annotated[int, typer.Option(help="Measured passes over the whole test set")]
WarmupOption = Annotated[int, typer.Option(help="Warm-up passes, outside the measured window")]
BatchOption = Annotated[int | None, typer.Option(help="Batch size unless the graph or metadata fixes it")]
IdleOption = Annotated[float, typer.Option(help="Idle baseline before warm-up (s)")]
SampleOption = Annotated[float, typer.Option(help="Sampling period of the power sampler (ms)")]
CooldownOption = Annotated[float, typer.Option(help="Longest wait for the GPU temperature to settle (s)")]
TargetOption = Annotated[float | None, typer.Option(help="GPU temperature to cool to (C); default: settled")]
ExclusiveOption = Annotated[bool, typer.Option(help="Refuse to measure while other processes use the GPU")]
MeterOption = Annotated[bool, typer.Option(help="Measure energy (--no-meter: accuracy and speed only)")]
PlotOption = Annotated[bool, typer.Option(help="Write the power timeline PNG")]


def _score_options(values: dict[str, object]):  # noqa: ANN202 - ScoreOptions, imported lazily
    """ScoreOptions from the shared options of `score` and `score-dir` (their parameters, by name)."""
    from evaluator.score import ScoreOptions
    from evaluator.submission import Limits

    v = values
    return ScoreOptions(
        data=v["data"], provider=v["provider"], gpu=v["gpu"], passes=v["passes"], warmup_passes=v["warmup"],
        batch_size=v["batch_size"], out_dir=v["out_dir"], meter=v["meter"], idle_seconds=v["idle_seconds"],
        sample_ms=v["sample_ms"], cooldown_seconds=v["cooldown"], target_temp_c=v["target_temp"],
        exclusive=v["exclusive"], plot=v["plot"],
        limits=Limits(v["max_file_bytes"], v["max_initializer_bytes"], v["max_nodes"]),
        prefer_nhwc=v["prefer_nhwc"], cuda_graph=v["cuda_graph"],
        overlap_batches=v["overlap_batches"], cudnn_search=v["cudnn_search"], tf32=v["tf32"],
        tune=v["tune"], tune_seconds=v["tune_seconds"],
    )


@app.command()
def score(
    model: Annotated[Path, typer.Argument(help="The .onnx submission")],
    data: DataOption = None,
    provider: ProviderOption = "auto",
    gpu: GpuOption = 0,
    passes: PassesOption = 200,
    warmup: WarmupOption = 1,
    batch_size: BatchOption = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Result folder (default results/<model stem>/)")] = None,
    idle_seconds: IdleOption = 10.0,
    sample_ms: SampleOption = 10.0,
    cooldown: CooldownOption = 60.0,
    target_temp: TargetOption = None,
    exclusive: ExclusiveOption = False,
    meter: MeterOption = True,
    plot: PlotOption = True,
    max_file_bytes: MaxFileOption = 2 << 30,
    max_initializer_bytes: MaxInitOption = 2 << 30,
    max_nodes: MaxNodesOption = 100_000,
    prefer_nhwc: NhwcOption = True,
    cuda_graph: GraphOption = True,
    overlap_batches: OverlapOption = True,
    cudnn_search: CudnnOption = "EXHAUSTIVE",
    tf32: Tf32Option = True,
    tune: Annotated[bool, typer.Option(help="Search the allowed settings first; measure the winner in full")] = False,
    tune_seconds: Annotated[float, typer.Option(help="Window per --tune candidate (s)")] = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Score one submission: accuracy, speed and energy over --passes passes."""
    from evaluator.score import RESULT_NAME, default_out_dir
    from evaluator.score import score as run_score

    options = _score_options(locals())
    with RichProgress(enabled=err.is_terminal) as progress:
        result = run_score(model, options, progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_score(result)
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    err.print(f"result: {(out_dir or default_out_dir(model)) / RESULT_NAME}", markup=False, highlight=False)


@app.command("score-dir")
def score_dir(
    directory: Annotated[Path, typer.Argument(help="A folder of submissions: *.onnx, or folders holding one")],
    data: DataOption = None,
    provider: ProviderOption = "auto",
    gpu: GpuOption = 0,
    passes: PassesOption = 200,
    warmup: WarmupOption = 1,
    batch_size: BatchOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Results root: one folder per submission")] = Path("results"),
    timeout: Annotated[float, typer.Option(help="Seconds one submission may take before it is killed")] = 3600.0,
    force: Annotated[bool, typer.Option(help="Rescore submissions that already have a matching result")] = False,
    idle_seconds: IdleOption = 10.0,
    sample_ms: SampleOption = 10.0,
    cooldown: CooldownOption = 60.0,
    target_temp: TargetOption = None,
    exclusive: ExclusiveOption = False,
    meter: MeterOption = True,
    plot: PlotOption = True,
    max_file_bytes: MaxFileOption = 2 << 30,
    max_initializer_bytes: MaxInitOption = 2 << 30,
    max_nodes: MaxNodesOption = 100_000,
    max_memory_gb: Annotated[float, typer.Option(help="Address-space limit of each CPU scoring child (GiB)")] = 16.0,
    prefer_nhwc: NhwcOption = True,
    cuda_graph: GraphOption = True,
    overlap_batches: OverlapOption = True,
    cudnn_search: CudnnOption = "EXHAUSTIVE",
    tf32: Tf32Option = True,
    tune: Annotated[bool, typer.Option(help="Search the allowed settings for each submission first")] = False,
    tune_seconds: Annotated[float, typer.Option(help="Window per --tune candidate (s)")] = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Score every submission in a folder, each in its own process, one after another; resumable."""
    from evaluator.batch import score_directory

    options = _score_options(locals() | {"out_dir": None})
    options.validate()
    with RichProgress(enabled=err.is_terminal) as progress:
        def report(name: str, done: int, total: int) -> None:
            progress.submissions(name, done, total)

        summary = score_directory(directory, out_dir, options, timeout, force, report, max_memory_gb)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for item in summary["submissions"]:
        detail = item.get("reason") or (f"{item['seconds']:.1f} s" if "seconds" in item else "")
        out.print(f"{item['outcome']:<8} {item['name']}  {detail}", markup=False, highlight=False)
    counts = summary["counts"]
    out.print(f"scored {counts['scored']}, failed {counts['failed']}, skipped {counts['skipped']}; "
              f"results in {out_dir}")


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Argument(help="The results root written by score-dir")] = Path("results"),
    thresholds: Annotated[str, typer.Option(help="Accuracy categories in percent")] = "90,95,99",
    fmt: Annotated[str, typer.Option("--format", help="table | csv | md | json | html")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout")] = None,
    allow_mixed: Annotated[bool, typer.Option(help="Rank results measured differently together anyway")] = False,
) -> None:
    """Rank results by energy within accuracy categories (each competes in the highest it reaches)."""
    from evaluator import leaderboard as lb
    from evaluator.fileio import atomic_write_bytes

    if fmt not in lb.FORMATS:
        raise EdlError(f"--format {fmt!r}: choose one of {', '.join(lb.FORMATS)}")
    board = lb.rank(lb.load_results(results_dir), lb.parse_thresholds(thresholds), allow_mixed)
    if fmt == "table":
        if output is not None:
            raise EdlError("--format table prints to the terminal; choose csv, md, json or html for --output")
        wide = out if out.is_terminal else Console(width=160)  # piped: keep whole rows for grep and logs
        wide.print(lb.render_table(board))
        for difference in board.mixed:
            err.print(f"warning: ranked despite: {difference}", markup=False, highlight=False)
        return
    text = lb.render(board, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(output, text.encode())
        err.print(f"wrote {output}", markup=False, highlight=False)


@data_app.command("fetch")
def data_fetch(
    source: Annotated[Path | None, typer.Option("--from", help="A local copy of cifar-10-python.tar.gz")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even when cached")] = False,
) -> None:
    """Download (or import) the official test set, verify its md5s and cache it."""
    from evaluator import data as data_module

    cache = data_module.default_cache_dir()
    if not force and source is None and (cached := data_module.load_cached(cache)) is not None:
        out.print(f"already cached in {cache}: {cached.count} images, fingerprint {cached.fingerprint}")
        return
    if source is not None:
        dataset = data_module.import_archive(source, cache)
    else:
        with RichProgress(enabled=err.is_terminal) as progress:
            dataset = data_module.fetch(cache, progress=progress.download)
    out.print(f"cached in {cache}: {dataset.count} images, official, fingerprint {dataset.fingerprint}")


@data_app.command("info")
def data_info(path: Annotated[Path | None, typer.Argument(help="A test set; default: the cached one")] = None,
              as_json: JsonOption = False) -> None:
    """Show what would be used: source, count, fingerprint, official or not."""
    from evaluator import data as data_module

    dataset = data_module.resolve(path, allow_download=False)
    info = dataset.describe() | {"note": dataset.note}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if value != "":
            out.print(f"{key:<12} {value}", markup=False, highlight=False)


@app.command()
def env(gpu: Annotated[int, typer.Option(help="GPU index to probe")] = 0, as_json: JsonOption = False) -> None:
    """What this machine can measure and run, and for anything missing, why and how to fix it."""
    from evaluator.envreport import environment_report

    report = environment_report(gpu)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title="edl environment", show_header=True)
    table.add_column("item")
    table.add_column("status")
    table.add_column("detail / fix", overflow="fold")
    for row in report["rows"]:
        table.add_row(row["item"], row["status"], row["detail"])
    out.print(table)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def meter(
    ctx: typer.Context,
    seconds: Annotated[float | None, typer.Option(help="Meter the machine doing nothing for N seconds")] = None,
    gpu: Annotated[int, typer.Option(help="GPU index to meter")] = 0,
    sample_ms: Annotated[float, typer.Option(help="Sampling period")] = 10.0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where samples and the report go")] = Path("results/meter"),
    as_json: JsonOption = False,
) -> None:
    """Meter any command (`edl meter -- CMD ...`) or the idle machine (`edl meter --seconds N`)."""
    from evaluator.metercmd import meter_command

    command = list(ctx.args)
    if bool(command) == (seconds is not None):
        raise EdlError("give either a command after `--` or --seconds N, not both and not neither")
    report = meter_command(command, seconds, gpu, sample_ms / 1000.0, out_dir)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        energy = report["energy"]
        out.print(f"window {energy['window_s']:.3f} s, exit code {report['exit_code']}")
        out.print(f"total {_fmt(energy['total_j'], ' J')}  (gpu {_fmt(energy['gpu_j'], ' J')}, "
                  f"cpu {_fmt(energy['cpu_j'], ' J')}, dram {_fmt(energy['dram_j'], ' J')})")
        for domain, reason in energy.get("missing_domains", {}).items():
            out.print(f"{domain}: unavailable: {reason}", markup=False, highlight=False)
    if report["exit_code"]:
        raise typer.Exit(report["exit_code"])


@app.command()
def verify(
    result: Annotated[Path, typer.Argument(help="A result.json written by edl score or score-dir, or its folder")],
    model: Annotated[Path | None, typer.Option(help="The submission, if not at the recorded path")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-check a result: checksums, internal consistency, energy recomputed from its samples."""
    from evaluator.verify import verify_result

    checks = verify_result(result, model)
    failed = [c for c in checks if c.outcome == "fail"]
    if as_json:
        print(json.dumps({"result": str(result), "ok": not failed,
                          "checks": [c.__dict__ for c in checks]}, indent=2))
    else:
        table = Table(title=f"verify {result}")
        for column in ("check", "outcome", "detail"):
            table.add_column(column)
        for c in checks:
            style = {"pass": "green", "fail": "bold red", "skip": "yellow"}[c.outcome]
            table.add_row(c.name, f"[{style}]{c.outcome}[/{style}]", c.detail)
        out.print(table)
        out.print(f"{'FAILED: ' + str(len(failed)) + ' check(s)' if failed else 'all checks hold'}")
    raise typer.Exit(2 if failed else 0)


def _version_callback(value: bool) -> None:
    if value:
        print(f"edl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True)] = False,
) -> None:
    """edl: score CIFAR-10 ONNX submissions by accuracy and energy."""


def main() -> None:
    try:
        app()
    except SubmissionError as exc:
        for problem in exc.problems:
            err.print(f"error: {problem}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except EdlError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; results already written are intact", markup=False)
        sys.exit(130)
