"""Bias gradients of convolution and fully connected layers: kernels/bias_grad.cu (used by
alexnet_raw/ops/conv2d.py and alexnet_raw/ops/linear.py; tested with them: tests/kernels/test_conv2d.py,
tests/kernels/test_linear.py)."""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, per_row

SOURCE = "bias_grad.cu"


def bias_grad_launch(grad_bias, grad_output) -> Launch:
    """gb[c] = sum of grad_output[:, c, ...] for grad_output (batch, C, ...)."""
    batch, channels = grad_output.shape[:2]
    per_channel = int(np.prod(grad_output.shape[2:], dtype=np.int64))
    grid, block = per_row(channels, batch * per_channel)
    return Launch(SOURCE, f"bias_grad<{c_type(grad_output.dtype)}>", grid, block,
                  (grad_bias, grad_output, np.int64(batch), np.int32(channels), np.int64(per_channel)))
