"""Weighted means of model weights, folded in one update at a time.

A server that holds every hospital's update before averaging needs memory for
all of them (100 updates of the 76 MB seed CNN are 7.6 GB). :class:`RunningMean`
keeps one accumulator the size of the model instead: each update is multiplied
by its weight and added as it arrives, then dropped, so the memory does not grow
with the number of hospitals. The arithmetic works through fixed-size chunks so
that no temporary array is as large as a layer.

Float weights are summed in float32 (float64 stays float64; float16 and
bfloat16 updates are widened chunk by chunk), as Flower's own FedAvg does, and
with the total weight known ahead in exactly its order of operations;
integer buffers (a batch-norm step count) are summed in float64 and rounded back
to their type. No Flower import: the ServerApp's strategy feeds it arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedward.errors import WeightsError

CHUNK = 1 << 18  # elements per step: 1 MiB of float32 temporaries at most


def _accumulator_dtype(dtype: np.dtype) -> np.dtype:
    if np.issubdtype(dtype, np.floating):
        return np.promote_types(dtype, np.float32)
    return np.dtype(np.float64)


class RunningMean:
    """The weighted mean of named arrays, updated one contribution at a time.

    Parameters
    ----------
    chunk
        Elements processed per step; bounds the temporary memory.
    expected_total
        The sum of the weights, when it is known before the contributions
        arrive (each hospital's example count, from the data check or an
        earlier round). Each contribution is then scaled by ``weight /
        expected_total`` as it is added, which is the arithmetic of Flower's
        FedAvg, step for step, so the result is the same to the last bit.
        Without it, contributions are scaled by their weight and the sum is
        divided at the end. If the weights that arrive do not add up to it
        (a hospital dropped out), the sum is rescaled to the right mean.

    Examples
    --------
    >>> mean = RunningMean()
    >>> mean.add({"w": np.array([1.0, 2.0], np.float32)}, weight=1)
    >>> mean.add({"w": np.array([3.0, 6.0], np.float32)}, weight=3)
    >>> mean.result()["w"]
    array([2.5, 5. ], dtype=float32)
    """

    def __init__(self, chunk: int = CHUNK, expected_total: float | None = None) -> None:
        self.chunk = chunk
        self.expected_total = expected_total or None
        self.count = 0
        self.total_weight = 0.0
        self._sums: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._buffer = np.empty(0, dtype=np.float64)

    def add(self, arrays: Mapping[str, np.ndarray], weight: float) -> None:
        """Fold ``weight * arrays`` into the sum.

        Raises
        ------
        WeightsError
            If the weight is not positive and finite, or the arrays' names or
            shapes differ from the first contribution's.
        """
        if not np.isfinite(weight) or weight <= 0:
            raise WeightsError(f"weight must be positive and finite, got {weight!r}")
        if self.count and set(arrays) != set(self._sums):
            raise WeightsError("contribution has other tensors than the first one")
        for key, values in arrays.items():
            if self.count and tuple(values.shape) != self._shapes[key]:
                raise WeightsError(
                    f"'{key}' has shape {values.shape}, expected {self._shapes[key]}"
                )
        factor = weight / self.expected_total if self.expected_total else weight
        for key, values in arrays.items():
            self._fold(key, np.asarray(values), factor)
        self.count += 1
        self.total_weight += float(weight)

    def _fold(self, key: str, values: np.ndarray, weight: float) -> None:
        flat = values.reshape(-1)
        if key not in self._sums:
            dtype = _accumulator_dtype(values.dtype)
            self._sums[key] = np.zeros(flat.size, dtype=dtype)
            self._dtypes[key] = values.dtype
            self._shapes[key] = tuple(values.shape)
        total = self._sums[key]
        scale = total.dtype.type(weight)
        for start in range(0, flat.size, self.chunk):
            stop = min(start + self.chunk, flat.size)
            buffer = self._scratch(total.dtype, stop - start)
            np.multiply(flat[start:stop], scale, out=buffer, casting="unsafe")
            np.add(total[start:stop], buffer, out=total[start:stop])

    def _scratch(self, dtype: np.dtype, size: int) -> np.ndarray:
        needed = size * dtype.itemsize
        if self._buffer.nbytes < needed:
            self._buffer = np.empty(needed, dtype=np.uint8)
        return self._buffer[:needed].view(dtype)

    def result(self) -> dict[str, np.ndarray]:
        """The weighted mean, each array in its original shape.

        Float arrays come back in the accumulator's type (float32 for float16,
        bfloat16 and float32 updates), integer arrays rounded to their own type.

        The accumulator is consumed: the mean is computed in place and the
        object cannot take more contributions afterwards.

        Raises
        ------
        WeightsError
            If nothing was added.
        """
        if not self.count:
            raise WeightsError("no update to average")
        means: dict[str, np.ndarray] = {}
        for key in list(self._sums):
            total = self._sums.pop(key)
            if not self.expected_total:
                np.divide(total, total.dtype.type(self.total_weight), out=total)
            elif self.total_weight != self.expected_total:  # someone did not answer
                scale = self.expected_total / self.total_weight
                np.multiply(total, total.dtype.type(scale), out=total)
            dtype = self._dtypes[key]
            if not np.issubdtype(dtype, np.floating):
                total = np.rint(total).astype(dtype)
            means[key] = total.reshape(self._shapes[key])
        self._buffer = np.empty(0, dtype=np.float64)
        return means
