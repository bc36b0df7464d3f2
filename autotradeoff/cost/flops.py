"""FLOPs of one call, counted by ``torch.utils.flop_counter``.

Counted: what FlopCounterMode's registry counts (matmul, addmm, bmm, convolution, attention
kernels; 2 FLOPs per multiply-add) plus, registered here, message aggregation of graph layers:
``scatter_add_``/``scatter_reduce_``/``index_add_`` count one FLOP per aggregated source element.
Not counted, as in flop_counter's own convention: element-wise ops (activations, normalisation,
softmax, edge weighting). Run the model in eval mode so dropout adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops"]

aten = torch.ops.aten


def _aggregate_flops(self_shape, dim, index_shape, src_shape=None, *args, out_shape=None, **kwargs) -> int:
    """One add per element scattered into the output (the source tensor's size)."""
    shape = src_shape if isinstance(src_shape, (tuple, list, torch.Size)) else index_shape
    return math.prod(shape)


def _index_add_flops(self_shape, dim, index_shape, source_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(source_shape)


# FlopCounterMode looks formulas up by overload packet (aten.scatter_add_), not overload (.default)
_AGGREGATION = {
    aten.scatter_add_: _aggregate_flops,
    aten.scatter_add: _aggregate_flops,
    aten.scatter_reduce_: _aggregate_flops,
    aten.scatter_reduce: _aggregate_flops,
    aten.index_add_: _index_add_flops,
    aten.index_add: _index_add_flops,
}


def count_flops(fn: Callable[[], object], *, grad: bool = False) -> int:
    """Run ``fn()`` once and return the FLOPs it performed: without autograd, or with it (``grad``) when
    ``fn`` is a training step whose backward pass is to be counted too."""
    with FlopCounterMode(display=False, custom_mapping=_AGGREGATION) as counter, torch.set_grad_enabled(grad):
        fn()
    return int(counter.get_total_flops())
