"""cupy.cuda.memory, for the stand-in."""

from ._memory import MemoryPointer, OutOfMemoryError  # noqa: F401
