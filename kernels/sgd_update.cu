// sgd_update.cu: one step of SGD with momentum and weight decay, in place on the parameters and the
// momentum buffer, in one of two conventions. `grad` is the gradient of the LOSS summed over the
// minibatch (what our backward functions return); batch is the minibatch size N.
//
//   sgd_update_cuda_convnet (cuda-convnet's Weights::update, the original AlexNet):
//       inc   = momentum * inc - lr * (grad / N + weight_decay * param)
//       param = param + inc
//     The original writes inc = mom*inc + eps*grad/N - eps*wc*W with grad the gradient of the
//     log-likelihood, i.e. minus our grad: hence the minus sign on lr here. With lr (epsW) == 0 the
//     original skips the update altogether; the host does too (alexnet_raw/ops/sgd_update.py).
//   sgd_update_torch (torch.optim.SGD, dampening 0, nesterov off):
//       d     = grad / N + weight_decay * param
//       buf   = momentum * buf + d          (a zero buffer gives torch's first step, buf = d)
//       param = param - lr * buf
//
// Layout: param, grad and the buffer are contiguous arrays of the same shape, seen as flat arrays
// of n elements (64-bit); they must not overlap. Tiling: none, one element per thread in a
// grid-stride loop (launch geometry: elementwise() of alexnet_raw/runtime/launch.py, in
// alexnet_raw/ops/sgd_update.py). Reference and tests: tests/kernels/test_sgd_update.py (torch.optim.SGD and a
// NumPy transcription of the original's formula).
#include "common.cuh"

template <typename T>
__global__ void sgd_update_cuda_convnet(T* __restrict__ param, T* __restrict__ inc, const T* __restrict__ grad,
                                        alx_index n, T lr, T momentum, T weight_decay, T batch) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    const T w = param[i];
    const T d = grad[i] / batch + weight_decay * w;
    const T v = momentum * inc[i] - lr * d;
    inc[i] = v;
    param[i] = w + v;
  }
}

template <typename T>
__global__ void sgd_update_torch(T* __restrict__ param, T* __restrict__ buf, const T* __restrict__ grad,
                                 alx_index n, T lr, T momentum, T weight_decay, T batch) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    const T w = param[i];
    const T d = grad[i] / batch + weight_decay * w;
    const T b = momentum * buf[i] + d;
    buf[i] = b;
    param[i] = w - lr * b;
  }
}

ALX_INSTANTIATE(sgd_update_cuda_convnet<float>)
ALX_INSTANTIATE(sgd_update_cuda_convnet<double>)
ALX_INSTANTIATE(sgd_update_torch<float>)
ALX_INSTANTIATE(sgd_update_torch<double>)
