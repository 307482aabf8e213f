"""Which device this worker renders on, found without importing torch when it can be.

A fully cached run renders nothing, yet its floor books name the worker's device, and
importing torch only to ask costs 1.5 to 4 s on 2 cores: more than the whole run. The
CUDA driver answers the same question through its C API in milliseconds (honouring
CUDA_VISIBLE_DEVICES, as torch does, and naming the device as
``torch.cuda.get_device_name`` does). Where the driver cannot speak for torch (a ROCm
build) or torch is loaded already, torch is asked.
"""

import ctypes
import functools
import importlib.metadata
import sys

_CUDA_SUCCESS = 0


@functools.cache
def device_class() -> str:
    """Name the hardware renders run on: "cpu", or the CUDA device's name.

    Answered once per process, so every record of one run names the same device.
    """
    build = _torch_build()
    if "torch" in sys.modules or build == "rocm":
        return _ask_torch()
    if build == "cpu":
        return "cpu"
    return _driver_device_name() or "cpu"


def default_task_workers() -> int:
    """How many stage tasks to run at once on this host.

    On a CPU-only host the render's intra-op threads already use every core, and
    composite or encode threads beside them stall its spin-waiting workers: the
    one-minute demo took 31 s with 3 workers and 25 s with 1 on 2 cores. With a
    GPU, CPU stages overlap the next render for free.
    """
    return 1 if device_class() == "cpu" else 4


def _torch_build() -> str:
    """ "cpu", "rocm" or "cuda", from the installed torch's version tag (2.5.1+cpu)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "cpu"
    tag = version.partition("+")[2]
    if tag == "cpu":
        return "cpu"
    return "rocm" if tag.startswith("rocm") else "cuda"


def _ask_torch() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _driver_device_name() -> str | None:
    """The first visible CUDA device's name from libcuda, or None without a usable device."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != _CUDA_SUCCESS or cuda.cuDeviceGetCount(ctypes.byref(count)):
        return None
    device = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    if count.value < 1 or cuda.cuDeviceGet(ctypes.byref(device), 0) != _CUDA_SUCCESS:
        return None
    if cuda.cuDeviceGetName(name, len(name), device) != _CUDA_SUCCESS:
        return None
    return name.value.decode()
