"""The host record names the metered GPU by identity, as the scorer builds it from the fairness record."""

from __future__ import annotations

from evaluator.scoring.hostinfo import host
from evaluator.scoring.thermal import GpuWatch

UUID_A = "GPU-aaaaaaaa-1111-4111-8111-111111111111"
UUID_B = "GPU-bbbbbbbb-2222-4222-8222-222222222222"


def test_the_host_record_names_the_board_cuda_runs_on(fake_gpu):
    fake_gpu(gpus=f"{UUID_A}@00000000:5E:00.0,{UUID_B}@00000000:1A:00.0", visible="GPU-bbbb")
    record = host(GpuWatch(0).record())
    assert (record.gpu, record.gpu_uuid, record.gpu_serial, record.gpu_pci_bus_id, record.gpu_mig_uuid) == (
        "Fake GPU", UUID_B, "SN-bbbbbbbb", "00000000:1A:00.0", None)


def test_without_a_gpu_the_host_record_says_nothing_of_one():
    record = host(GpuWatch(0).record())  # the autouse fixture makes NVML absent
    assert (record.gpu, record.gpu_uuid, record.gpu_serial, record.gpu_pci_bus_id) == (None, None, None, None)
    assert record.cpu and host().gpu_uuid is None
