"""cupy.cuda.memory, for the stand-in."""

from . import _memory, _runtime
from ._memory import MemoryPointer, OutOfMemoryError  # noqa: F401


class MemoryPool:
    """cupy.cuda.MemoryPool as the stand-in allocates: every freed allocation goes back at once, so
    the pool never holds free blocks (free_bytes() is 0, as CuPy's after free_all_blocks()). The
    byte counts are those of the current device, as CuPy's."""

    def used_bytes(self):
        return _memory.used_bytes(_runtime.get_device())

    def free_bytes(self):
        return 0

    def total_bytes(self):
        return self.used_bytes() + self.free_bytes()

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def get_limit(self):
        return _runtime.config.memory_bytes


_default_pool = MemoryPool()


def get_default_memory_pool():
    return _default_pool
