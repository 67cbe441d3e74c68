// concat.cu: concatenation of feature blocks, cuda-convnet2's concat and pass layers of several
// inputs (and, in NCHW, a concatenation along channels when the inputs share H x W):
//   forward   y[r, offset + j] = x[r, j]      for r < rows, j < columns
//   backward  gx[r, j] = gy[r, offset + j]
// one launch per input, offset = the columns of the inputs before it.
//
// Layout: x (rows, columns) and y (rows, total) C-contiguous; rows = images, columns = one input's
// features per image (C*H*W), total = the sum over the inputs. 64-bit flat indices.
// Tiling: none, one element of x (gx) per thread in a grid-stride loop; consecutive threads read
// and write consecutive features of a row.
// Launch geometry: elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/concat.py.
// Reference: alexnet_raw/checks/torch_reference.py (concat: torch.cat); tests: tests/kernels/test_concat.py.
#include "common.cuh"

template <typename T>
__global__ void concat_forward(T* __restrict__ y, const T* __restrict__ x, alx_index rows, alx_index columns,
                               alx_index total, alx_index offset) {
  ALX_GRID_STRIDE_LOOP(i, rows * columns) {
    const alx_index r = i / columns, j = i - r * columns;
    y[r * total + offset + j] = x[i];
  }
}

template <typename T>
__global__ void concat_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, alx_index rows,
                                alx_index columns, alx_index total, alx_index offset) {
  ALX_GRID_STRIDE_LOOP(i, rows * columns) {
    const alx_index r = i / columns, j = i - r * columns;
    grad_x[i] = grad_y[r * total + offset + j];
  }
}

ALX_INSTANTIATE(concat_forward<float>)
ALX_INSTANTIATE(concat_forward<double>)
ALX_INSTANTIATE(concat_backward<float>)
ALX_INSTANTIATE(concat_backward<double>)
