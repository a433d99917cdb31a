"""Array type aliases that state dtype and rank (after ``arch/_typing.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BoolArray1D",
    "Float64Array1D",
    "Float64Array2D",
    "Float64Array3D",
    "Int32Array1D",
    "Int64Array1D",
    "Int64Array2D",
    "Int64Array3D",
]

Float64Array1D = np.ndarray[tuple[int], np.dtype[np.float64]]
Float64Array2D = np.ndarray[tuple[int, int], np.dtype[np.float64]]
Float64Array3D = np.ndarray[tuple[int, int, int], np.dtype[np.float64]]
Int64Array1D = np.ndarray[tuple[int], np.dtype[np.int64]]
Int64Array2D = np.ndarray[tuple[int, int], np.dtype[np.int64]]
Int64Array3D = np.ndarray[tuple[int, int, int], np.dtype[np.int64]]
Int32Array1D = np.ndarray[tuple[int], np.dtype[np.int32]]
BoolArray1D = np.ndarray[tuple[int], np.dtype[np.bool_]]
AnyArray = npt.NDArray[Any]
