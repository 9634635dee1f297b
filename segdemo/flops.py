"""How much arithmetic a network is, and how much this machine can do: the FLOP limit, the time
a model would take if every multiply-add ran at the machine's float32 matmul speed.

FLOPs are counted from the layers (2 per multiply-add of every convolution, transposed
convolution and dense layer; BatchNorm, activations, pooling and resizing are left out: they
fold into the convolutions or are memory-bound, a few % at most). tf.profiler agreed within
1.1 % on the shipped models. The machine's speed is a NumPy float32 matmul (the best a BLAS gets
on these cores), so a path's multiple of the limit says how far it is from the hardware.
"""
from __future__ import annotations

import time

import numpy as np


def _size(shape) -> int:
    return int(np.prod([d for d in shape if d is not None]))


def layer_flops(layer) -> int:
    """2 x multiply-adds of one layer for one image (0 for layers without a kernel)."""
    kind = type(layer).__name__
    if kind == "SeparableConv2D":
        kernels = _size(layer.depthwise_kernel.shape) + _size(layer.pointwise_kernel.shape)
        return 2 * _size(layer.output.shape[1:3]) * kernels
    if kind == "DepthwiseConv2D":
        return 2 * _size(layer.output.shape[1:3]) * _size(layer.kernel.shape)
    if kind == "Conv2DTranspose":  # every input pixel scatters a kernel-sized patch
        return 2 * _size(layer.input.shape[1:3]) * _size(layer.kernel.shape)
    if kind == "Conv2D":
        return 2 * _size(layer.output.shape[1:3]) * _size(layer.kernel.shape)
    if kind == "Dense":
        return 2 * _size(layer.input.shape[1:-1]) * _size(layer.kernel.shape)
    return 0


def network_flops(model) -> int:
    """FLOPs of one forward pass for one image, nested models (encoders) included."""
    total = 0
    for layer in model.layers:
        total += network_flops(layer) if getattr(layer, "layers", None) else layer_flops(layer)
    return total


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul speed in GFLOP/s (NumPy's BLAS, best of `repeats`)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
