"""Reading CIFAR-10's python batches without running anything they contain.

A pickle names callables and `pickle.load` calls them: a crafted `data_batch_1` could run any
code before a single check. CIFAR-10's batches hold only dicts, lists, bytes, str, ints and uint8
NumPy arrays, so this unpickler rebuilds exactly those (NumPy arrays through the few NumPy functions
their pickles name, in NumPy 1 and 2 spellings) and refuses every other global, naming it.
"""

from __future__ import annotations

import importlib
import pickle

# (module, name) of what pickled NumPy arrays and dtypes call, nothing else
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how pickle protocol 2 writes a Python 3 bytes object
})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a callable that the expected format never holds."""


class DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(f"it names {module}.{name}, which a CIFAR-10 batch never holds; refused without "
                                "calling it (a pickle runs what it names)")
        if module.startswith("numpy.core"):  # NumPy 1's spelling, numpy._core in NumPy 2
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def load(file, encoding="bytes"):
    """pickle.load(file, encoding=...) restricted to plain data and NumPy arrays."""
    return DataOnlyUnpickler(file, encoding=encoding).load()
