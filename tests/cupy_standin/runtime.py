"""cupy.cuda.runtime, for the stand-in's simulated devices."""

from __future__ import annotations

from . import _memory, _runtime, _streams
from ._runtime import CUDARuntimeError

__all__ = ["CUDARuntimeError", "getDeviceCount", "getDevice", "setDevice", "deviceCanAccessPeer",
           "deviceEnablePeerAccess", "getDeviceProperties", "deviceGetAttribute", "deviceSynchronize",
           "memGetInfo", "runtimeGetVersion", "driverGetVersion"]

_ATTRIBUTES = {13: "clockRate", 16: "multiProcessorCount", 38: "l2CacheSize", 75: "major", 76: "minor"}


def getDeviceCount():
    return _runtime.config.devices


def getDevice():
    return _runtime.get_device()


def setDevice(device):
    _runtime.set_device(device)


def deviceCanAccessPeer(device, peer):
    return int(_runtime.can_access_peer(device, peer))


def deviceEnablePeerAccess(peer, flags=0):
    _runtime.enable_peer_access(peer, strict=True)


def getDeviceProperties(device):
    return _runtime.properties(device)


def deviceGetAttribute(attrib, device):
    props = _runtime.properties(device)
    if attrib not in _ATTRIBUTES:
        raise CUDARuntimeError(1, f"device attribute {attrib} is not modelled by the stand-in")
    return props[_ATTRIBUTES[attrib]]


def deviceSynchronize():
    _streams.synchronize_device(_runtime.get_device())


def memGetInfo():
    total = _runtime.config.memory_bytes
    return total - _memory.used_bytes(_runtime.get_device()), total


def runtimeGetVersion():
    return 13000


def driverGetVersion():
    return 13000
