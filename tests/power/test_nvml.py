"""GPU energy and power through a small fake of the pynvml functions edl uses; which board is metered."""

from __future__ import annotations

import importlib
import time

import pytest

from evaluator.errors import MeterError
from evaluator.power.analysis import Window, load_samples
from evaluator.power.base import MeterUnavailable
from evaluator.power.gpu import Gpu, GpuIdentity, NoGpu, open_gpu, resolve_gpu
from evaluator.power.meter import default_specs
from evaluator.power.nvml import NvmlSource, NvmlSpec
from evaluator.power.nvmllib import NvmlError, NvmlGpuLost, NvmlNotFound, NvmlNotSupported, call, supported
from evaluator.power.sampler import Sampler
from evaluator.report.energy import run_energy

UUID_A = "GPU-aaaaaaaa-1111-4111-8111-111111111111"
UUID_B = "GPU-bbbbbbbb-2222-4222-8222-222222222222"
UUID_C = "GPU-bbbbcccc-3333-4333-8333-333333333333"
MIG_1 = "MIG-11111111-aaaa-5aaa-9aaa-aaaaaaaaaaaa"
MIG_2 = "MIG-22222222-bbbb-5bbb-9bbb-bbbbbbbbbbbb"
# NVML's index order, deliberately not the PCI bus order: the resolver must sort by bus id itself.
# PCI bus order: B (0x1A), C (0x3B), A (0x5E).
THREE = (f"{UUID_A}@00000000:5E:00.0,{UUID_B}@00000000:1A:00.0/{MIG_1}:1:0/{MIG_2}:2:0,"
         f"{UUID_C}@00000000:3B:00.0")
NVML_A, NVML_B, NVML_C = 0, 1, 2


def nvml():
    return importlib.import_module("fake_pynvml")


def resolved(cuda_device: int = 0) -> GpuIdentity:
    return resolve_gpu(cuda_device, nvml())


def opened(cuda_device: int = 0) -> NvmlSource:
    return NvmlSource((resolved(cuda_device),), "fake_pynvml")


def test_nvml_counter_and_instant_power(fake_gpu):
    fake_gpu(watts=250.0)
    source = opened()
    assert [c.name for c in source.channels()] == ["gpu0_energy_j", "gpu0_power_w"]
    first = source.read()
    time.sleep(0.2)
    second = source.read()
    assert second[1] == pytest.approx(250.0)
    assert second[0] - first[0] == pytest.approx(250.0 * 0.2, rel=0.1)


def test_one_failed_reading_is_nan_and_the_gpu_never_wraps(fake_gpu, monkeypatch):
    fake_gpu(watts=250.0)
    source = opened()
    monkeypatch.setenv("FAKE_NVML_MODE", "no_counter")  # the counter stops answering after the source opened
    energy, power = source.read()
    assert energy != energy and power == pytest.approx(250.0)  # NaN: the sampler's mark of a dropped sample
    assert source.shortest_wrap_seconds() is None  # PowerSource's default: no counter here wraps


def test_nvml_instant_unsupported_falls_back_to_average_and_says_so(fake_gpu):
    fake_gpu(mode="no_instant")
    source = opened()
    assert source.gpus[0].power_method == "average"
    assert "averaged" in source.channels()[1].note


def test_nvml_without_counter_integrates_power(fake_gpu):
    fake_gpu(mode="no_counter")
    source = opened()
    assert [c.name for c in source.channels()] == ["gpu0_power_w"]


def test_nvml_absent_is_a_no_gpu_that_says_why_and_the_sampler_reports_it(fake_gpu):
    gpu = open_gpu(0, "fake_pynvml")  # the autouse fixture makes the fake absent
    assert isinstance(gpu, NoGpu) and "NVML cannot initialise (NVML Shared Library Not Found)" in gpu.reason
    assert (gpu.identity, gpu.snapshot(), gpu.temperature_c(), gpu.driver_version()) == (None, None, None, None)
    spec = default_specs((1,), "fake_pynvml")[0]
    assert isinstance(spec, NvmlSpec) and spec.gpus == () and spec.unavailable == gpu.reason
    with pytest.raises(MeterUnavailable) as unavailable:
        spec.open()  # in the sampler process: the same reason the scoring process found
    assert str(unavailable.value) == gpu.reason
    fake_gpu()
    with pytest.raises(MeterUnavailable, match="only a board open_gpu resolved is metered"):
        NvmlSource((GpuIdentity(uuid=nvml().boards()[0].uuid),), "fake_pynvml")  # no NVML index: not resolved


def test_unset_visible_devices_on_one_gpu_is_that_gpu_whatever_the_order(fake_gpu):
    fake_gpu()
    gpu = resolved(0)
    board = nvml().boards()[0]
    assert (gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.name, gpu.mig_uuid) == (0, board.uuid, board.bus_id,
                                                                             "Fake GPU", None)
    assert gpu.serial == "SN-" + board.uuid[4:12]
    with pytest.raises(MeterError, match="CUDA device 1 matches no GPU here: NVML sees 1"):
        resolved(1)


def test_unset_visible_devices_on_several_gpus_needs_the_pci_order(fake_gpu):
    fake_gpu(gpus=THREE)
    with pytest.raises(MeterError, match=r"CUDA device 0 is a position in CUDA's order.*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        resolved(0)
    fake_gpu(gpus=THREE, order="PCI_BUS_ID")
    assert [resolved(d).uuid for d in range(3)] == [UUID_B, UUID_C, UUID_A]  # by PCI bus id, not NVML's index
    assert [resolved(d).index for d in range(3)] == [NVML_B, NVML_C, NVML_A]


def test_indices_in_the_pci_order_and_reordered(fake_gpu):
    fake_gpu(gpus=THREE, visible="2", order="PCI_BUS_ID")
    assert resolved(0).uuid == UUID_A
    fake_gpu(gpus=THREE, visible="2,0", order="PCI_BUS_ID")
    assert (resolved(0).uuid, resolved(1).uuid) == (UUID_A, UUID_B)
    assert (resolved(0).index, resolved(1).index) == (NVML_A, NVML_B)
    with pytest.raises(MeterError, match="CUDA device 2 is not visible: CUDA_VISIBLE_DEVICES='2,0' lists 2"):
        resolved(2)


def test_indices_without_the_pci_order_on_several_gpus_are_refused_with_the_fix(fake_gpu):
    fake_gpu(gpus=THREE, visible="0,1")
    with pytest.raises(MeterError) as refused:
        resolved(1)
    message = str(refused.value)
    assert "CUDA_VISIBLE_DEVICES entry '1'" in message and "fastest first" in message
    assert "set CUDA_DEVICE_ORDER=PCI_BUS_ID" in message and "by UUID in CUDA_VISIBLE_DEVICES" in message
    with pytest.raises(MeterError, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        default_specs((1,), "fake_pynvml")  # the meter refuses before anything is measured
    fake_gpu(gpus=THREE, visible="0,1", order="FASTEST_FIRST")
    with pytest.raises(MeterError, match="fastest first"):
        resolved(0)


def test_index_entries_on_a_single_gpu_need_no_order(fake_gpu):
    fake_gpu(visible="0")
    assert resolved(0).index == 0
    fake_gpu(visible="1")
    with pytest.raises(MeterError, match=r"entry '1'\) matches no GPU here: NVML sees 1"):
        resolved(0)


def test_full_uuids_in_any_order_and_any_device_order(fake_gpu):
    fake_gpu(gpus=THREE, visible=f"{UUID_C},{UUID_A}")  # no CUDA_DEVICE_ORDER needed: UUIDs name boards
    assert (resolved(0).index, resolved(1).index) == (NVML_C, NVML_A)
    assert resolved(1) == GpuIdentity(UUID_A, "Fake GPU", "SN-aaaaaaaa", "00000000:5E:00.0", None, NVML_A)
    fake_gpu(gpus=THREE, visible=f" {UUID_B.upper()} ")
    assert resolved(0).uuid == UUID_B


def test_uuid_prefixes_unique_or_refused(fake_gpu):
    fake_gpu(gpus=THREE, visible="GPU-aaaa,GPU-bbbbc,GPU-bbbb")
    assert (resolved(0).uuid, resolved(1).uuid) == (UUID_A, UUID_C)
    with pytest.raises(MeterError, match=r"'GPU-bbbb'\) is the beginning of 2 UUIDs"):
        resolved(2)


def test_mig_ids_new_and_old_form_meter_the_parent_board(fake_gpu):
    fake_gpu(gpus=THREE, visible=f"{MIG_2},MIG-1111,MIG-{UUID_B}/1/0,MIG-{UUID_B}/2/0")
    assert resolved(0) == GpuIdentity(UUID_B, "Fake GPU", "SN-bbbbbbbb", "00000000:1A:00.0", MIG_2, NVML_B)
    assert (resolved(1).index, resolved(1).mig_uuid) == (NVML_B, MIG_1)
    assert (resolved(2).index, resolved(2).mig_uuid) == (NVML_B, MIG_1)
    assert (resolved(3).index, resolved(3).mig_uuid) == (NVML_B, MIG_2)
    mig = opened(0)
    assert [c.name for c in mig.channels()] == ["gpu1_energy_j", "gpu1_power_w"]
    assert f"MIG instance {MIG_2}: the whole board's energy" in mig.channels()[0].note


@pytest.mark.parametrize(("visible", "message"), [
    ("GPU-deadbeef", r"\(CUDA_VISIBLE_DEVICES entry 'GPU-deadbeef'\) matches no GPU here \(UUIDs: GPU-aaaa"),
    ("MIG-deadbeef", r"entry 'MIG-deadbeef'\) matches no GPU here"),
    (f"MIG-{UUID_B}/3/0", rf"GPU {UUID_B} has no MIG instance 3/0"),
    (f"MIG-{UUID_B}/x", r"is not a MIG id"),
    ("-1", r"entry '-1'\) matches no GPU: give an index, a GPU-<uuid> or a MIG-<uuid>"),
    ("7", r"entry '7'\) matches no GPU here: NVML sees 3"),
    ("", r"CUDA device 0 is not visible: CUDA_VISIBLE_DEVICES='' lists 0"),
])
def test_an_entry_that_matches_nothing_is_a_clear_error(fake_gpu, visible, message):
    fake_gpu(gpus=THREE, visible=visible, order="PCI_BUS_ID")
    with pytest.raises(MeterError, match=message):
        resolved(0)


def test_the_gpu_is_opened_by_uuid_once_and_its_snapshot_embeds_the_identity(fake_gpu):
    fake_gpu(gpus=THREE, visible=MIG_1)
    gpu = open_gpu(0, "fake_pynvml")
    assert isinstance(gpu, Gpu) and gpu.identity == GpuIdentity(UUID_B, "Fake GPU", "SN-bbbbbbbb",
                                                                "00000000:1A:00.0", MIG_1, NVML_B)
    state = gpu.snapshot()
    assert state.identity is gpu.identity and state.temperature_c == 40 and state.sm_clock_mhz == 1980
    assert (state.power_limit_w, state.memory_used_mib, gpu.driver_version()) == (700.0, 1024, "999.99")


def test_an_unsupported_reading_is_null_and_any_other_nvml_failure_is_raised_typed(fake_gpu):
    fake_gpu(mode="no_clocks")
    gpu = open_gpu(0, "fake_pynvml")
    state = gpu.snapshot()
    assert (state.sm_clock_mhz, state.memory_clock_mhz, state.temperature_c) == (None, None, 40)
    fake_gpu(mode="lost")
    with pytest.raises(NvmlGpuLost, match="nvmlDeviceGetTemperature: GPU is lost") as lost:
        gpu.snapshot()  # before, every NVML error read as None: a lost GPU looked like one without a sensor
    assert isinstance(lost.value, MeterError) and lost.value.code == 15
    with pytest.raises(NvmlGpuLost):
        gpu.temperature_c()


def test_nvml_errors_are_typed_by_their_return_code():
    fake = nvml()

    def raises(error: type[Exception]):
        def function(*_: object) -> None:
            raise error("message")
        return function

    for error, typed in ((fake.NVMLError_NotSupported, NvmlNotSupported), (fake.NVMLError_NotFound, NvmlNotFound),
                         (fake.NVMLError_GpuIsLost, NvmlGpuLost), (fake.NVMLError, NvmlError)):
        with pytest.raises(typed) as caught:
            call(fake, raises(error))
        assert type(caught.value) is typed and caught.value.code == error.value
    assert supported(fake, raises(fake.NVMLError_NotSupported)) is None
    with pytest.raises(NvmlNotFound):
        supported(fake, raises(fake.NVMLError_NotFound))  # only NotSupported reads as "no reading"
    with pytest.raises(ZeroDivisionError):
        call(fake, lambda: 1 / 0)  # not an NVML error: not edl's to rename


def test_the_source_opens_the_resolved_board_by_uuid_not_by_position(fake_gpu):
    fake_gpu(gpus=THREE, watts="100,200,300")
    wrong_index = GpuIdentity(UUID_C, index=NVML_A)  # as if the other process numbered boards otherwise
    by_uuid = NvmlSource((wrong_index,), "fake_pynvml")
    assert by_uuid.read()[1] == pytest.approx(300.0)  # board C's watts, under the index the spec gave
    gone = GpuIdentity("GPU-0ff0ff0f-0000-4000-8000-000000000000", index=0)
    with pytest.raises(MeterUnavailable, match="cannot be opened by its UUID"):
        NvmlSource((gone,), "fake_pynvml")


def test_the_spawn_sampler_meters_the_board_the_parent_resolved(tmp_path, fake_gpu):
    fake_gpu(gpus=THREE, watts="100,200,300", visible=f"{UUID_A},GPU-bbbbc")
    specs = default_specs((1,), "fake_pynvml", str(tmp_path / "no-rapl"))
    assert isinstance(specs[0], NvmlSpec) and specs[0].gpus == (resolved(1),) and specs[0].gpus[0].uuid == UUID_C
    with Sampler(specs, tmp_path / "s.csv", 0.01) as sampler:
        start = time.monotonic()
        time.sleep(1.0)
        window = Window("measured", start, time.monotonic())
        time.sleep(0.05)
        sampler.stop()
    samples = load_samples(tmp_path / "s.csv")
    assert [c["name"] for c in samples.channels] == ["gpu2_energy_j", "gpu2_power_w"]
    assert samples.columns["gpu2_energy_j"][0] > 2e6  # board C's counter, a gigajoule above board A's
    report, _ = run_energy(samples, window, passes=1, images_per_pass=1)
    assert report.gpu_j == pytest.approx(300.0 * window.seconds, rel=0.02)
