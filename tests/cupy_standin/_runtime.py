"""Simulated devices: how many, the current one (per thread), peer access, and CUDA's errors.

Mirrors cupy.cuda.runtime and cupy.cuda.Device where alexnet_raw depends on them: an invalid
device ordinal raises CUDARuntimeError; `Device(i)` as a context manager makes i current and
restores the previous device on exit; peer access must be enabled (explicitly, or by CuPy's
copies and elementwise kernels, which do it themselves) before a kernel may touch another
device's memory.
"""

from __future__ import annotations

import threading

import numpy as np

# the statuses alexnet_raw can meet, with cudaGetErrorName / cudaGetErrorString's words
STATUS = {
    0: ("cudaSuccess", "no error"),
    1: ("cudaErrorInvalidValue", "invalid argument"),
    2: ("cudaErrorMemoryAllocation", "out of memory"),
    35: ("cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    600: ("cudaErrorNotReady", "device not ready"),
    700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
    704: ("cudaErrorPeerAccessAlreadyEnabled", "peer access is already enabled"),
    217: ("cudaErrorPeerAccessUnsupported", "peer access is not supported between these two devices"),
}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError: `status` is the cudaError_t value."""

    def __init__(self, status, detail=""):
        self.status = status
        name, text = STATUS.get(status, (f"cudaError{status}", "unknown error"))
        super().__init__(f"{name}: {text}" + (f" ({detail})" if detail else ""))


class Config:
    """What the simulated machine has. Set through cupy_standin.installed(...)."""

    def __init__(self, devices=1, memory_bytes=80 * 2**30, peer_access=True, seed=0,
                 name="NVIDIA H100 80GB HBM3 (alexnet_raw CuPy stand-in on the CPU runtime)",
                 compute_capability=(9, 0), sms=132, clock_khz=1_980_000, l2_bytes=50 * 2**20):
        if not isinstance(devices, int) or devices < 1:
            raise ValueError(f"the stand-in needs at least one device, got {devices!r}")
        self.devices = devices
        self.memory_bytes = int(memory_bytes)
        self.peer_access = bool(peer_access)
        self.seed = int(seed)
        self.name = name
        self.compute_capability = compute_capability
        self.sms, self.clock_khz, self.l2_bytes = sms, clock_khz, l2_bytes


config = Config()
_peer_enabled = set()  # (from device, to device): kernels on `from` may touch `to`'s memory
_lock = threading.Lock()


class _Current(threading.local):
    def __init__(self):
        self.device = 0


_current = _Current()


def reset(new_config: Config):
    global config
    config = new_config
    with _lock:
        _peer_enabled.clear()
    _current.device = 0


def check_device(device_id) -> int:
    if isinstance(device_id, bool) or not isinstance(device_id, (int, np.integer)):
        raise TypeError(f"a device id must be an int, got {type(device_id).__name__}")
    if not 0 <= int(device_id) < config.devices:
        raise CUDARuntimeError(101, f"device {device_id} of {config.devices}")
    return int(device_id)


def get_device() -> int:
    return _current.device


def set_device(device_id) -> None:
    _current.device = check_device(device_id)


def can_access_peer(a, b) -> bool:
    return check_device(a) != check_device(b) and config.peer_access


def enable_peer_access(peer, strict=True) -> bool:
    """From the current device to `peer`. strict: raise as cudaDeviceEnablePeerAccess does when it is
    already enabled; otherwise (CuPy's automatic enabling) return whether access is now possible."""
    here = get_device()
    peer = check_device(peer)
    if here == peer or not config.peer_access:
        if strict:
            raise CUDARuntimeError(217 if here != peer else 1, f"from device {here} to {peer}")
        return here == peer
    with _lock:
        if (here, peer) in _peer_enabled:
            if strict:
                raise CUDARuntimeError(704, f"from device {here} to {peer}")
            return True
        _peer_enabled.add((here, peer))
    return True


def peer_enabled(here, there) -> bool:
    return here == there or (here, there) in _peer_enabled


def properties(device_id) -> dict:
    """cudaGetDeviceProperties' fields that alexnet_raw reads, as CuPy returns them."""
    check_device(device_id)
    major, minor = config.compute_capability
    return {"name": config.name.encode(), "totalGlobalMem": config.memory_bytes, "multiProcessorCount": config.sms,
            "major": major, "minor": minor, "clockRate": config.clock_khz, "l2CacheSize": config.l2_bytes,
            "sharedMemPerBlock": 48 * 1024, "maxThreadsPerBlock": 1024, "warpSize": 32}
