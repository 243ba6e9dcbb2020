"""Steps of the benchmark workloads that use numpy: an array source, ``arr * 2`` and a matrix product."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from traitlets import Int

from pipeline.component import Component

#: float64 elements in one MiB.
MIB_ELEMENTS = 1024 * 1024 // 8


class Arrays(Component):
    """Producer: yields ``count`` float64 arrays of ``mib`` MiB each, array i filled with i."""

    count = Int(10, min=0, help="How many arrays.").tag(config=True)
    mib = Int(1, min=1, help="Size of each array in MiB.").tag(config=True)

    def run(self) -> Iterator[np.ndarray]:
        """Yield each array."""
        for i in range(self.count):
            yield np.full(self.mib * MIB_ELEMENTS, float(i))


class Double(Component):
    """Stager: returns ``arr * 2``."""

    def run(self, arr: np.ndarray) -> np.ndarray:
        """Double the array."""
        return arr * 2


class MatMul(Component):
    """Stager: one product of two square float64 matrices (BLAS releases the GIL), then the message on."""

    matrix_size = Int(256, min=1, help="Rows of the square matrices multiplied.").tag(config=True)

    def init(self) -> None:
        """Make the matrices once."""
        rng = np.random.default_rng(0)
        self._a = rng.random((self.matrix_size, self.matrix_size))
        self._b = rng.random((self.matrix_size, self.matrix_size))

    def run(self, msg: Any) -> Any:
        """Multiply, then return the message unchanged."""
        self._a @ self._b
        return msg
