"""cupy.cuda, for the stand-in: devices, streams, events, memory, the runtime module."""

from __future__ import annotations

from . import memory, nccl, runtime  # noqa: F401
from ._device import Device  # noqa: F401
from ._memory import MemoryPointer  # noqa: F401
from .memory import MemoryPool  # noqa: F401
from ._raw import CUDADriverError  # noqa: F401
from ._runtime import get_device as get_device_id  # noqa: F401
from ._streams import Event, Stream, get_current_stream, get_elapsed_time  # noqa: F401


def is_available():
    return True
