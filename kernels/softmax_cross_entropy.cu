// softmax_cross_entropy.cu: softmax cross-entropy of logits against class indices (its mean loss and
// the gradient of that mean), the top-k correct count, and the softmax itself (for predictions).
//
//   softmax       p_rj = exp(x_rj - m_r) / s_r           (xent_softmax_rows)
//   row loss      l_r  = log(sum_j exp(x_rj - m_r)) - (x_r,t_r - m_r),  m_r = max_j x_rj
//                        (log-sum-exp shifted by the row max: finite for any finite logits)
//   mean loss          = (sum_r l_r) / N                 (xent_mean, a second kernel: fixed order)
//   gradient      g_rj = (exp(x_rj - m_r) / s_r - [j == t_r]) * (1 / N),  s_r = sum_j exp(x_rj - m_r)
//   top-k flag    f_r  = 1 if fewer than k entries of row r are strictly larger than x_r,t_r
//                        (ties count in the target's favour) and no entry of row r is NaN (a NaN
//                        row is never correct); correct count = sum_r f_r (xent_count, a second kernel)
// NaN in a row makes its max, sum, loss and whole gradient row NaN (and so the mean), as PyTorch.
// A target outside [0, C) (the host rejects it first, unless the caller checked it: the engine on
// a GPU) gives a NaN row loss, a NaN gradient row and flag 0, never a read out of bounds.
//
// Layout: x is (N, C) row-major, one row per example; target is (N,) int64. Tiling: one block per
// row (grid-stride over rows), its threads striding over the C columns, each keeping a partial
// result in a fixed order; partials are combined by a warp xor-butterfly then across warps through
// 32 shared slots (block_allreduce, kernels/block_reduce.cuh): the same tree on every run and schedule, so results are
// bit-identical, and every thread ends with the same value. Block size: a multiple of 32, at most
// 1024; the final reductions over N use one block. Launch geometry: per_row() of
// alexnet_raw/runtime/launch.py, in alexnet_raw/ops/softmax_cross_entropy.py.
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_softmax_cross_entropy.py (torch.nn.functional.cross_entropy and
// its autograd gradient, torch.topk).
#include "block_reduce.cuh"
#include "common.cuh"

__device__ __forceinline__ float xent_exp(float v) { return expf(v); }
__device__ __forceinline__ double xent_exp(double v) { return exp(v); }
__device__ __forceinline__ float xent_log(float v) { return logf(v); }
__device__ __forceinline__ double xent_log(double v) { return log(v); }
__device__ __forceinline__ float xent_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double xent_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ float xent_neg_inf(float) { return __int_as_float((int)0xff800000u); }
__device__ __forceinline__ double xent_neg_inf(double) { return __longlong_as_double((long long)0xfff0000000000000ULL); }

// max that propagates NaN from either side (fmax would drop it)
struct XentMax {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const { return (a > b || a != a) ? a : b; }
  template <typename V>
  __device__ __forceinline__ V identity() const { return xent_neg_inf(V(0)); }
};

// Row statistics: m = max_j x_j, s = sum_j exp(x_j - m), each thread strides j = tid, tid + B, ...
template <typename T>
__device__ __forceinline__ void row_stats(const T* __restrict__ xr, int C, T* slots, T& m, T& s) {
  XentMax vmax;
  m = xent_neg_inf(T(0));
  for (int j = threadIdx.x; j < C; j += blockDim.x) m = vmax(m, xr[j]);
  m = block_allreduce(m, slots, vmax);
  s = T(0);
  for (int j = threadIdx.x; j < C; j += blockDim.x) s += xent_exp(xr[j] - m);
  s = block_allreduce(s, slots, BlockSum());
}

template <typename T>
__global__ void xent_forward_rows(T* __restrict__ row_loss, const T* __restrict__ x,
                                  const long long* __restrict__ target, alx_index rows, int C) {
  __shared__ T slots[32];
  for (alx_index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * (alx_index)C;
    T m, s;
    row_stats(xr, C, slots, m, s);
    if (threadIdx.x == 0) {
      const long long t = target[r];
      row_loss[r] = (t >= 0 && t < C) ? xent_log(s) - (xr[t] - m) : xent_nan(T(0));
    }
  }
}

template <typename T>
__global__ void xent_backward(T* __restrict__ grad, const T* __restrict__ x, const long long* __restrict__ target,
                              alx_index rows, int C, T inv_n) {
  __shared__ T slots[32];
  for (alx_index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * (alx_index)C;
    T* gr = grad + r * (alx_index)C;
    T m, s;
    row_stats(xr, C, slots, m, s);
    const long long t = target[r];
    const bool valid = t >= 0 && t < C;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
      const T p = xent_exp(xr[j] - m) / s;
      gr[j] = valid ? (j == t ? p - T(1) : p) * inv_n : xent_nan(T(0));
    }
  }
}

template <typename T>
__global__ void xent_softmax_rows(T* __restrict__ probs, const T* __restrict__ x, alx_index rows, int C) {
  __shared__ T slots[32];
  for (alx_index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * (alx_index)C;
    T* pr = probs + r * (alx_index)C;
    T m, s;
    row_stats(xr, C, slots, m, s);
    for (int j = threadIdx.x; j < C; j += blockDim.x) pr[j] = xent_exp(xr[j] - m) / s;
  }
}

// out[0] = (sum_i v[i]) / n in a fixed order; one block (n == 0 gives NaN, as torch's mean).
template <typename T>
__global__ void xent_mean(T* __restrict__ out, const T* __restrict__ v, alx_index n) {
  __shared__ T slots[32];
  T acc = T(0);
  for (alx_index i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
  acc = block_allreduce(acc, slots, BlockSum());
  if (threadIdx.x == 0) out[0] = acc / T(n);
}

// Each thread counts the entries strictly above the target's value v and adds k once if it saw a
// NaN, so the row's total is < k exactly when fewer than k entries beat v and the row holds no NaN
// (64-bit: at most C + 1024 * k).
template <typename T>
__global__ void xent_topk_rows(int* __restrict__ correct, const T* __restrict__ x,
                               const long long* __restrict__ target, alx_index rows, int C, int k) {
  __shared__ long long slots[32];
  for (alx_index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * (alx_index)C;
    const long long t = target[r];
    const bool valid = t >= 0 && t < C;
    const T v = valid ? xr[t] : T(0);
    long long above = 0;
    bool nan = false;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
      const T e = xr[j];
      nan = nan || e != e;
      above += e > v ? 1 : 0;
    }
    above = block_allreduce(above + (nan ? (long long)k : 0LL), slots, BlockSum());
    if (threadIdx.x == 0) correct[r] = (valid && above < k) ? 1 : 0;
  }
}

// out[0] = sum_i flags[i]; one block.
__global__ void xent_count(long long* __restrict__ out, const int* __restrict__ flags, alx_index n) {
  __shared__ long long slots[32];
  long long acc = 0;
  for (alx_index i = threadIdx.x; i < n; i += blockDim.x) acc += flags[i];
  acc = block_allreduce(acc, slots, BlockSum());
  if (threadIdx.x == 0) out[0] = acc;
}

ALX_INSTANTIATE(xent_forward_rows<float>)
ALX_INSTANTIATE(xent_forward_rows<double>)
ALX_INSTANTIATE(xent_backward<float>)
ALX_INSTANTIATE(xent_backward<double>)
ALX_INSTANTIATE(xent_softmax_rows<float>)
ALX_INSTANTIATE(xent_softmax_rows<double>)
ALX_INSTANTIATE(xent_mean<float>)
ALX_INSTANTIATE(xent_mean<double>)
ALX_INSTANTIATE(xent_topk_rows<float>)
ALX_INSTANTIATE(xent_topk_rows<double>)
ALX_INSTANTIATE(xent_count)
