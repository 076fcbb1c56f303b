"""The host record names the metered GPU by identity, as the scorer builds it from the fairness record."""

from __future__ import annotations

from evaluator.power.gpu import GpuIdentity
from evaluator.scoring.cooldown import GpuWatch
from evaluator.scoring.hostinfo import host

UUID_A = "GPU-aaaaaaaa-1111-4111-8111-111111111111"
UUID_B = "GPU-bbbbbbbb-2222-4222-8222-222222222222"


def test_the_host_record_names_the_board_cuda_runs_on(fake_gpu):
    fake_gpu(gpus=f"{UUID_A}@00000000:5E:00.0,{UUID_B}@00000000:1A:00.0", visible="GPU-bbbb")
    watch = GpuWatch(0)
    record = host(watch.identity)
    assert record.gpu == GpuIdentity(UUID_B, "Fake GPU", "SN-bbbbbbbb", "00000000:1A:00.0", None, 1)
    assert watch.record().identity is record.gpu  # one record, embedded where the GPU is named


def test_without_a_gpu_the_host_record_says_nothing_of_one():
    watch = GpuWatch(0)  # the autouse fixture makes NVML absent
    assert host(watch.identity).gpu is None and watch.record() is None and "NVML cannot initialise" in watch.reason
    assert host().cpu and host().gpu is None


def test_a_gpu_that_cannot_be_read_is_recorded_with_the_error_and_keeps_its_identity(fake_gpu):
    fake_gpu(mode="lost")
    watch = GpuWatch(0)
    state = watch.record()
    assert state.error == "nvmlDeviceGetTemperature: GPU is lost" and state.temperature_c is None
    assert watch.temperature_c() is None and host(watch.identity).gpu.uuid == watch.identity.uuid
