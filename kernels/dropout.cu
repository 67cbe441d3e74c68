// dropout.cu: out = in * m, with m = scale for kept elements and 0 for dropped ones; the keep/drop
// decision comes from Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
// as 1, 2, 3", SC'11) computed here, so the CPU runtime and every GPU draw the same mask, for float
// and double alike. Forward and backward are the same kernel: the backward regenerates the mask
// from the same (seed, offset) and multiplies the output gradient by the same m.
//
// The random stream, exactly (the contract every backend and the engine rely on):
//   key     = (k0, k1) = (low 32 bits of seed, high 32 bits of seed)
//   element i (flat index, 64-bit) uses the counter of its group g = i / 4,
//   counter = (c0, c1, c2, c3) = (low32(g), high32(g), low32(offset), high32(offset)),
//   r_i     = word (i % 4) of philox4x32_10(counter, key), an unsigned 32-bit integer,
//   u_i     = r_i * 2^-32 in [0, 1): the uniform of element i,
//   element i is kept  <=>  u_i >= p  <=>  r_i >= threshold, threshold = ceil(p * 2^32)
//   (computed exactly on the host: alexnet_raw/ops/dropout.py). P(drop) = threshold / 2^32, which is
//   p exactly when p is a multiple of 2^-32 (0.5, 0.25, ...), and within 2^-32 of p otherwise.
// The comparison is made on the integer r_i, so no floating-point rounding enters the mask.
// `start` (default 0) is the stream index of in[0]: element i of the array is element start + i of
// the stream, so a slice of a batch (rows a.. of a data-parallel replica: start = a * row length)
// draws exactly the mask the whole batch draws there.
// `offset` selects a stream: streams of different offsets (or seeds) share no counter value for any
// tensor size (each has 2^64 groups), so the engine gives every (layer, step) its own offset.
// threshold == 0 (p == 0, or the "original" mode's test-time scaling) keeps everything without
// drawing numbers.
//
// m = scale or 0 multiplies in[i], so NaN and Inf inputs give NaN where dropped, as PyTorch's
// input * noise does. scale (host side): "inverted" T(1) / T(1 - p) (PyTorch's noise.div_(1 - p));
// "original" 1 in training, T(1 - p) at test time (cuda-convnet's hs layers).
//
// Layout: any contiguous tensor, a flat array of n elements (64-bit). Tiling: one thread per group
// of 4 consecutive stream elements (one Philox call gives 4 words), grid-stride loop over the groups
// that [start, start + n) meets. Launch geometry: alexnet_raw/ops/dropout.py (elementwise() of launch.py).
// Reference and tests: tests/kernels/test_dropout.py (Random123 known-answer vectors, a pure-Python
// Philox, mask statistics, torch's dropout arithmetic with the same mask).
#include "common.cuh"

#define ALX_PHILOX_M0 0xD2511F53u
#define ALX_PHILOX_M1 0xCD9E8D57u
#define ALX_PHILOX_W0 0x9E3779B9u
#define ALX_PHILOX_W1 0xBB67AE85u

// Philox4x32-10 of counter (c0..c3) under key (k0, k1): ten rounds, the key bumped by the Weyl
// constants before rounds 2..10 (Random123's philox4x32_R order). Result in c0..c3.
__device__ __forceinline__ void philox4x32_10(unsigned& c0, unsigned& c1, unsigned& c2, unsigned& c3, unsigned k0,
                                              unsigned k1) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += ALX_PHILOX_W0;
      k1 += ALX_PHILOX_W1;
    }
    const unsigned hi0 = __umulhi(ALX_PHILOX_M0, c0), lo0 = ALX_PHILOX_M0 * c0;
    const unsigned hi1 = __umulhi(ALX_PHILOX_M1, c2), lo1 = ALX_PHILOX_M1 * c2;
    const unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
}

// out[i] = in[i] * (r_{start + i} >= threshold ? scale : 0) for i in [0, n). out may not alias in.
template <typename T>
__global__ void dropout_apply(T* __restrict__ out, const T* __restrict__ in, alx_index n, unsigned long long seed,
                              unsigned long long offset, unsigned long long threshold, T scale, alx_index start) {
  const alx_index first = start / 4, groups = (start + n + 3) / 4 - first;
  const unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
  ALX_GRID_STRIDE_LOOP(j, groups) {
    const alx_index g = first + j;  // the stream's group
    unsigned r[4] = {0u, 0u, 0u, 0u};  // threshold 0: every word passes
    if (threshold != 0ull) {
      r[0] = (unsigned)(unsigned long long)g;
      r[1] = (unsigned)((unsigned long long)g >> 32);
      r[2] = (unsigned)offset;
      r[3] = (unsigned)(offset >> 32);
      philox4x32_10(r[0], r[1], r[2], r[3], k0, k1);
    }
    const alx_index base = 4 * g - start;  // the array index of the group's first word
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const alx_index i = base + lane;
      if (i >= 0 && i < n) {
        const T m = (unsigned long long)r[lane] >= threshold ? scale : T(0);
        out[i] = in[i] * m;
      }
    }
  }
}

// The raw stream, for tests (Random123's known-answer vectors) and for other users of the same
// generator: out[w] = word (w % 4) of philox4x32_10 at group first_group + w / 4 (64-bit, wrapping)
// of stream `offset` under key `seed`, for w in [0, n). With first_group 0, out[i] is dropout's r_i.
__global__ void philox4x32_10_words(unsigned* __restrict__ out, alx_index n, unsigned long long seed,
                                    unsigned long long offset, unsigned long long first_group) {
  const alx_index groups = (n + 3) / 4;
  ALX_GRID_STRIDE_LOOP(g, groups) {
    const unsigned long long counter = first_group + (unsigned long long)g;
    unsigned r[4] = {(unsigned)counter, (unsigned)(counter >> 32), (unsigned)offset, (unsigned)(offset >> 32)};
    philox4x32_10(r[0], r[1], r[2], r[3], (unsigned)seed, (unsigned)(seed >> 32));
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      if (4 * g + lane < n) out[4 * g + lane] = r[lane];
    }
  }
}

ALX_INSTANTIATE(dropout_apply<float>)
ALX_INSTANTIATE(dropout_apply<double>)
ALX_INSTANTIATE(philox4x32_10_words)
