"""Bytes alive in tensors that torch ops create, counted op by op: a CPU stand-in for
the CUDA allocator's `allocated` figure, to check the estimator's transient rules
against what a library's code really holds (tests/test_quant_transients.py).

A storage is counted once, from the first op that returns a tensor on it, until the
last tensor on it made under the mode is collected. Storages of the tensors named in
`ignore` (the inputs, which exist before the mode) are never counted.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """`peak`: the most bytes alive at once; `live`: alive now."""

    def __init__(self, ignore: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.ignore = {t.untyped_storage().data_ptr() for t in ignore}
        self.refs: dict[int, list[int]] = {}  # storage address -> [tensors, bytes]
        self.live = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.ignore:
            return
        if key in self.refs:
            self.refs[key][0] += 1
        else:
            self.refs[key] = [1, storage.nbytes()]
            self.live += storage.nbytes()
        weakref.finalize(tensor, self._release, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if type(item) is torch.Tensor:
                self._count(item)
        self.peak = max(self.peak, self.live)
        return out
