"""Real files for the tests: ONNX models, CIFAR-10 archives in both official formats, powercap trees."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from evaluator.config import AuditConfig, MeterConfig, RuntimeConfig, ScoreConfig
from evaluator.power.analysis import Window

ONNX_DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}
IR_VERSION = 9  # what the installed onnxruntime accepts; onnx's default may be newer


def fast_config(data: Path | None = None, passes: int = 2, *, runtime: RuntimeConfig | None = None, tune: bool = False,
                tune_window_s: float = 2.0, warmup_passes: int = 1, audit: bool = True, **meter: object) -> ScoreConfig:
    """A ScoreConfig for tests: few passes, no idle baseline, no cool-down, no plot, unless asked.

    ``audit=False`` switches the generalization audit off (--audit-copies 0: the result is then not ranked): a
    test whose subject is not the audit or the board saves its extra passes over the copies in every scoring.
    """
    meter_options = {"idle_s": 0.0, "cooldown_s": 0.0, "plot": False} | meter
    return ScoreConfig(data=data, passes=passes, warmup_passes=warmup_passes, tune=tune, tune_window_s=tune_window_s,
                       runtime=runtime or RuntimeConfig(), meter=MeterConfig(**meter_options),  # type: ignore[arg-type]
                       audit=AuditConfig() if audit else AuditConfig(audit_copies=0))


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = IR_VERSION
    onnx.save(model, path)
    return path


def oracle_model(path: Path, dtype: str = "float32", layout: str = "NCHW", output: str = "scores",
                 batch: int | str = "N", metadata_batch: int | None = None, opset: int = 17,
                 label_dtype: str = "int64") -> Path:
    """A model whose answer is written in the image: scores are row 0, columns 0..9 of channel 0.

    ``oracle_images`` writes a chosen class there, so the expected accuracy is known exactly in
    every input form (uint8, float16, float32; NCHW, NHWC).
    """
    shape = [batch, 3, 32, 32] if layout == "NCHW" else [batch, 32, 32, 3]
    ends = [1, 1, 10] if layout == "NCHW" else [1, 10, 1]
    x = helper.make_tensor_value_info("pixels", ONNX_DTYPES[dtype], shape)
    initializers = [
        numpy_helper.from_array(np.array([0, 0, 0], np.int64), "starts"),
        numpy_helper.from_array(np.array(ends, np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 10], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Slice", ["pixels", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Reshape", ["sliced", "shape"], ["raw_scores"]),
    ]
    score_type = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    nodes.append(helper.make_node("Cast", ["raw_scores"], ["scores"], to=score_type))
    if output == "scores":
        y = helper.make_tensor_value_info("scores", score_type, [batch, 10])
    else:
        label_type = helper.np_dtype_to_tensor_dtype(np.dtype(label_dtype))
        nodes.append(helper.make_node("ArgMax", ["scores"], ["argmax"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["argmax"], ["labels"], to=label_type))
        y = helper.make_tensor_value_info("labels", label_type, [batch])
    graph = helper.make_graph(nodes, "oracle", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if metadata_batch is not None:
        helper.set_model_props(model, {"edl.batch_size": str(metadata_batch)})
    return save(model, path)


def oracle_images(count: int, correct: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images that the oracle model classifies as a random class; the first ``correct`` labels agree."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, size=(count, 32, 32, 3), dtype=np.uint8)
    predicted = rng.integers(0, 10, size=count)
    images[:, 0, :10, 0] = 0
    images[np.arange(count), 0, predicted, 0] = 255
    labels = predicted.copy()
    labels[correct:] = (labels[correct:] + 1) % 10
    return images, labels.astype(np.uint8)


def twin_of(source: Path, path: Path) -> Path:
    """The same graph with one more metadata_props entry: the same answers and work, other bytes (another
    sha256), so a board ranks it as a submission of its own (a byte-identical copy is one model's duplicate)."""
    model = onnx.load(source)
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "twin": path.stem})
    return save(model, path)


def save_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    np.savez(path, x=images, y=labels)
    return path


def python_batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The python version's test_batch: a pickled dict, rows of 3072 bytes in CHW order."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in labels], b"data": rows,
             b"filenames": [b"x.png"] * len(images)}
    return pickle.dumps(batch, protocol=2)


def binary_batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes()


def make_tarball(path: Path, member: str, payload: bytes) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return path


class PowercapTree:
    """A powercap tree on disk in the kernel's file format, whose counters advance at known watts.

    A thread rewrites each ``energy_uj`` (atomically, by rename) every ``tick_s``, wrapping at
    ``max_energy_range_uj`` exactly as the hardware does. It remembers when it wrote: on loaded cores
    it runs late, and a counter that many ms late is W x that many joules off at a window's edge.
    """

    def __init__(self, root: Path, package_watts: list[float], dram_watts: float | None = None,
                 max_range_uj: int = 262_143_328_850, tick_s: float = 0.002) -> None:
        self.root = root
        self.package_watts = package_watts
        self.dram_watts = dram_watts
        self.max_range_uj = max_range_uj
        self.tick_s = tick_s
        self.zones: list[tuple[Path, float]] = []
        root.mkdir(parents=True, exist_ok=True)
        for index, watts in enumerate(package_watts):
            package = self._zone(root / f"intel-rapl:{index}", f"package-{index}", watts)
            core = self._zone(package / f"intel-rapl:{index}:0", "core", watts / 2)
            os.symlink(core, root / core.name)  # sysfs lists sub-zones at top level too
            if dram_watts is not None:
                dram = self._zone(package / f"intel-rapl:{index}:1", "dram", dram_watts)
                os.symlink(dram, root / dram.name)
        self._zone(root / "intel-rapl:9", "psys", 999.0)  # platform zone: overlaps packages, never summed
        self._zone(root / "intel-rapl-mmio:0", "package-0", 999.0)  # mmio duplicate of package 0
        self._t0 = time.monotonic()
        self.written_s: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _zone(self, path: Path, name: str, watts: float) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{self.max_range_uj}\n")
        (path / "energy_uj").write_text("0\n")
        (path / "enabled").write_text("1\n")
        self.zones.append((path, watts))
        return path

    def write(self, elapsed_s: float) -> None:
        for path, watts in self.zones:
            value = int(watts * elapsed_s * 1e6) % self.max_range_uj
            tmp = path / ".energy_uj.tmp"
            tmp.write_text(f"{value}\n")
            os.replace(tmp, path / "energy_uj")
        self.written_s.append(time.monotonic())

    def lag_s(self, window: Window | None = None) -> float:
        """The writer's longest pause between writes around ``window`` (default: the whole run)."""
        t = np.array(self.written_s)
        start_s, end_s = (window.start_s, window.end_s) if window else (-np.inf, np.inf)
        around = t[max(np.searchsorted(t, start_s) - 1, 0):np.searchsorted(t, end_s) + 1]
        return float(np.diff(around).max()) if around.size > 1 else self.tick_s

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.write(time.monotonic() - self._t0)

    def __enter__(self) -> PowercapTree:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def conv_model(path: Path, channels: int = 16, seed: int = 0) -> Path:
    """A small real CNN (conv, relu, pool, linear) with random weights: real work for timing tests."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    initializers = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.3, "w_conv"),
        numpy_helper.from_array(rng.standard_normal((channels, 10)).astype(np.float32), "w_fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "w_conv"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_fc"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "conv", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def passes_lasting(model: Path, images: int, seconds: float, batch: int = 250, least: int = 200) -> int:
    """How many passes over `images` make a window of about `seconds` here (at least `least`); float32 NCHW models.

    Timing tests assert joules = watts x seconds, with a tolerance that grows as the window shrinks, so
    the window must be long on a fast machine too; a fixed pass count made it machine-dependent.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = np.zeros((batch, 3, 32, 32), np.float32)
    runs_per_pass = -(-images // batch)
    session.run(None, {name: feed})
    start = time.perf_counter()
    for _ in range(3 * runs_per_pass):
        session.run(None, {name: feed})
    per_pass_s = (time.perf_counter() - start) / 3
    return max(least, int(seconds / per_pass_s) + 1)


def endless_loop_model(path: Path) -> Path:
    """A valid model whose Loop never ends (trip count 2**62, condition always true): for timeouts."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("Loop", ["trips", "cond", "zero"], ["total"], body=body),
        helper.make_node("Flatten", ["pixels"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "a"], ["ten"]),
        helper.make_node("Add", ["ten", "total"], ["scores"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "cond"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "s"),
        numpy_helper.from_array(np.array([10], np.int64), "e"),
        numpy_helper.from_array(np.array([1], np.int64), "a"),
    ]
    graph = helper.make_graph(nodes, "endless", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def memory_hog_model(path: Path, gigabytes: float) -> Path:
    """A valid model that materialises a float32 tensor of ``gigabytes`` on every run."""
    elements = int(gigabytes * (1 << 30) / 4)
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("ConstantOfShape", ["hog_shape"], ["hog"],
                         value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("ReduceSum", ["hog"], ["hog_sum"], keepdims=0),
        helper.make_node("Flatten", ["pixels"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "a"], ["ten"]),
        helper.make_node("Add", ["ten", "hog_sum"], ["scores"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([elements], np.int64), "hog_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "s"),
        numpy_helper.from_array(np.array([10], np.int64), "e"),
        numpy_helper.from_array(np.array([1], np.int64), "a"),
    ]
    graph = helper.make_graph(nodes, "hog", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def result_variant(template, accuracy: float, total_j: float | None, *, passes: int | None = None,
                   gpu: str | None = None, domains: tuple[str, ...] = ("cpu", "gpu"), model_bytes: int | None = None,
                   fingerprint: str | None = None, name: str | None = None, official: bool = True):
    """A real scored Result (``template``, written by the scorer) with other figures: for ranking tests.

    ``name`` makes it another submission: its model.name, and a model sha256 of its own (a board lists
    results of one sha256 once). ``official`` False: scored on data that is not the official test set.
    Everything goes through the typed Result, so a renamed field breaks these tests as it breaks the writer.
    """
    import dataclasses
    import hashlib

    from evaluator.power.gpu import GpuIdentity
    from evaluator.report.energy import per_pass_and_image
    from evaluator.report.integrity import seal
    from evaluator.report.result import Energy

    images = template.data.images
    passes = passes or template.passes
    run = template.runs[0]
    counted = list(domains) if total_j is not None else []
    board = GpuIdentity(name=gpu) if gpu else run.host.gpu
    run = dataclasses.replace(run, host=dataclasses.replace(run.host, gpu=board),
                              energy=dataclasses.replace(run.energy, total_j=total_j, total_domains=counted))
    per_pass, per_image = per_pass_and_image(total_j, passes, images)
    energy = Energy(total_j=total_j, total_domains=counted,
                    missing_domains={} if total_j is not None else {"gpu": "no NVML"}, gpu_j=total_j, cpu_j=None,
                    dram_j=None, per_pass_j=per_pass, per_image_j=per_image, repeats_j=[total_j],
                    reason="" if total_j is not None else "gpu: no NVML")
    audit = dataclasses.replace(template.audit, accuracy=accuracy, drop_points=0.0,
                                correct=[round(accuracy * images)] * template.audit.copies)
    return seal(dataclasses.replace(
        template, config=dataclasses.replace(template.config, passes=passes), runs=[run],
        energy=energy, correct=round(accuracy * images), accuracy=accuracy, category=None, audit=audit,
        model=dataclasses.replace(template.model, bytes=model_bytes or template.model.bytes,
                                  name=name or template.model.name,
                                  sha256=hashlib.sha256(f"{template.model.sha256}{name}".encode()).hexdigest()
                                  if name else template.model.sha256),
        data=dataclasses.replace(template.data, fingerprint=fingerprint or template.data.fingerprint,
                                 official=official)))


def failed_variant(template, reason: str, name: str = "x"):
    from evaluator.report.integrity import seal
    from evaluator.scoring.hostinfo import versions
    from evaluator.scoring.records import failed_result

    return seal(failed_result(name, None, reason, template.config, template.data, versions(), Path(".")))


def memorizing_model(path: Path, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> Path:
    """The cheat the audit must catch: a lookup of the public test set in six standard operators.

    Each image (uint8 NHWC) is projected onto one fixed random vector; the nearest stored key of a
    memorised image gives its label. Exact on the images it memorised, chance on anything else.
    """
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal((32 * 32 * 3, 1)).astype(np.float32)
    keys = (images.reshape(len(images), -1).astype(np.float32) @ direction).reshape(1, -1)
    x = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 32, 32, 3])
    y = helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"])
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["as_float", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "direction"], ["key"]),
        helper.make_node("Sub", ["key", "keys"], ["difference"]),
        helper.make_node("Abs", ["difference"], ["distance"]),
        helper.make_node("ArgMin", ["distance"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("Gather", ["labels_table", "nearest"], ["labels"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([-1, 32 * 32 * 3], np.int64), "flat_shape"),
        numpy_helper.from_array(direction, "direction"),
        numpy_helper.from_array(keys.astype(np.float32), "keys"),
        numpy_helper.from_array(labels.astype(np.int64), "labels_table"),
    ]
    graph = helper.make_graph(nodes, "lookup", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [20, 20, 20], [250, 190, 212]], np.float32)


def colour_images(count: int, correct: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is their colour (plus noise); the first ``correct`` labels agree with it.

    A model that reads the mean colour generalizes over flips and shifts, as a real CIFAR model does.
    """
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 10, size=count)
    noise = rng.normal(0, 12, size=(count, 32, 32, 3))
    images = np.clip(PALETTE[classes][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    labels = classes.copy()
    labels[correct:] = (labels[correct:] + 1) % 10
    return images, labels.astype(np.uint8)


def colour_model(path: Path, batch: int | str = "N") -> Path:
    """A generalizing classifier for ``colour_images``: the nearest palette colour to the image's mean colour."""
    palette = PALETTE / 255.0
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 10])
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["mean"]),
        helper.make_node("Flatten", ["mean"], ["colour"]),
        helper.make_node("MatMul", ["colour", "weights"], ["dot"]),
        helper.make_node("Add", ["dot", "bias"], ["scores"]),  # -|c - p|^2 up to a constant: 2 c.p - |p|^2
    ]
    initializers = [numpy_helper.from_array((2 * palette.T).astype(np.float32), "weights"),
                    numpy_helper.from_array(-(palette**2).sum(1).astype(np.float32), "bias")]
    graph = helper.make_graph(nodes, "colour", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def busy_colour_model(path: Path, channels: int, seed: int = 0) -> Path:
    """``colour_model``'s answers, plus a convolution of ``channels`` filters whose result is added times zero:
    the work (and so the time and energy) grows with ``channels``, the predictions do not change."""
    model = onnx.load(colour_model(path))
    rng = np.random.default_rng(seed)
    graph = model.graph
    graph.node[-1].output[0] = "clean_scores"
    graph.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "busy_w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
    ])
    graph.node.extend([
        helper.make_node("Conv", ["pixels", "busy_w"], ["busy"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["busy"], ["busy_mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["busy_mean", "one_axis"], ["busy_column"]),
        helper.make_node("Mul", ["busy_column", "zero"], ["nothing"]),
        helper.make_node("Add", ["clean_scores", "nothing"], ["scores"]),
    ])
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "one_axis"))
    return save(model, path)


def smooth_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unrelated smooth images (a blurred random 4x4 colour grid, light noise) with random labels: nothing to
    generalize from, yet a 2-px shift barely moves their coarse means, as with real photographs."""
    rng = np.random.default_rng(seed)
    coarse = np.kron(rng.integers(0, 256, size=(count, 4, 4, 3)).astype(np.float32), np.ones((1, 8, 8, 1)))
    padded = np.pad(coarse, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    rows = sum(padded[:, i : i + 32] for i in range(5)) / 5  # a separable 5x5 box blur
    blurred = sum(rows[:, :, i : i + 32] for i in range(5)) / 5
    images = np.clip(blurred + rng.normal(0, 4, coarse.shape), 0, 255).astype(np.uint8)
    return images, rng.integers(0, 10, count).astype(np.uint8)


def make_archive(path: Path, members: dict[str, bytes]) -> Path:
    """A gzipped tarball holding several members, as the official archives do (test and training batches)."""
    with tarfile.open(path, "w:gz") as archive:
        for member, payload in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path
