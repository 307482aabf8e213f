"""Naming the render device without importing torch, and agreeing with torch where it is loaded."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from media import devices


@pytest.fixture(autouse=True)
def fresh_answer():
    devices.device_class.cache_clear()
    yield
    devices.device_class.cache_clear()


def test_this_host_is_named_without_importing_torch():
    probe = (
        "import sys; from media.devices import device_class, default_task_workers; "
        "print(device_class(), default_task_workers(), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    import torch

    expected = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    workers = "1" if expected == "cpu" else "4"
    assert done.stdout.split() == [*expected.split(), workers, "False"]


@pytest.mark.parametrize(
    ("version", "driver", "expected"),
    [
        ("2.5.1+cpu", "NVIDIA H100 80GB HBM3", "cpu"),  # a CPU build cannot use the GPU
        ("2.5.1", "NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
        ("2.5.1+cu121", None, "cpu"),  # no driver or no visible device
    ],
)
def test_the_driver_names_the_device_for_cuda_builds_of_torch(
    monkeypatch, version, driver, expected
):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    monkeypatch.setattr(devices, "_driver_device_name", lambda: driver)
    assert devices.device_class() == expected


def test_rocm_builds_and_a_loaded_torch_are_asked_directly(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.5.1+rocm6.2")
    monkeypatch.setattr(devices, "_driver_device_name", lambda: "never asked")
    monkeypatch.setattr(devices, "_ask_torch", lambda: "AMD Instinct MI300X")
    assert devices.device_class() == "AMD Instinct MI300X"
