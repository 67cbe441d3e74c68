"""cupy._util, for the stand-in."""

from ._array import PerformanceWarning  # noqa: F401
