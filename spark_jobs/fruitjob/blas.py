"""How many threads numpy's OpenBLAS may use, changed at run time (threadpoolctl's approach, without the dependency).

A Spark task has one core: a BLAS call that starts one thread per core of the machine in every concurrent task
oversubscribes it, and OpenBLAS's threads wait for each other spinning. Measured on a 2-core machine with one core
busy: ``eigh`` of 1280 x 1280 took 0.3 s on one thread and 3-6 s on two. Without OpenBLAS (another BLAS, or no
``/proc``), nothing changes.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

# Symbol names of numpy's bundled OpenBLAS: numpy 1.x (64-bit ints, suffixed), numpy 2.x (scipy-openblas), plain.
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")
_FOUND: Optional[List[Tuple[object, object]]] = None  # per process: a Python worker runs many tasks


def _loaded_openblas() -> List[str]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(path for path in paths if os.path.isfile(path))


def _controls() -> List[Tuple[object, object]]:
    global _FOUND
    if _FOUND is not None:
        return _FOUND
    found = []
    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                getter = getattr(library, "%s_get_num_threads%s" % (prefix, suffix), None)
                setter = getattr(library, "%s_set_num_threads%s" % (prefix, suffix), None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    setter.argtypes = [ctypes.c_int]
                    found.append((getter, setter))
    _FOUND = found
    return found


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Run the block with at most ``threads`` OpenBLAS threads, then restore the previous count."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS, so that /proc/self/maps lists it)

    controls = _controls()
    previous = [getter() for getter, _setter in controls]
    for _getter, setter in controls:
        setter(threads)
    try:
        yield
    finally:
        for (_getter, setter), count in zip(controls, previous):
            setter(count)
