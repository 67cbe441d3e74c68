// conv_taps.cuh: the gathered operands of the implicit-GEMM kernels that read images in place
// (kernels/conv2d.cu, kernels/local.cu) on the tile of kernels/gemm_tile.cuh: the per-chunk tap
// table, the stagers reading it, the shape both pass around and the forward's gather of an image
// window (ConvForwardTaps: k = (c, fy, fx) of a filter). conv2d.cu's header describes the scheme
// (each k's offsets in a shared-memory table built once per 256 k, no integer division in the
// K loop); each kernel file documents its own operands and tests (tests/kernels/test_conv2d.py,
// tests/kernels/test_local.py).
#pragma once

#include "common.cuh"
#include "gemm_tile.cuh"

struct ConvShape {
  int C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups;
  __device__ int Cg() const { return C / groups; }
  __device__ int Fg() const { return F / groups; }
  __device__ int KK() const { return KH * KW; }
};

// ---- the per-chunk table and the stagers reading it ----------------------------------------------
#define CONV_CHUNK 256  // k per table: one entry per thread

// One k of the gathered B operand: B(k, column) = the element `off` bytes from the column's base
// element if the column's base pixel (y0, x0) + (dy, dx) is inside the (h, w) image, else 0. One
// 16-byte table entry (one shared-memory read): x, y = off (low, high word), z, w = dy, dx.
typedef int4 ConvTap;
__device__ __forceinline__ ConvTap conv_tap(alx_index off, int dy, int dx) {
  return make_int4((int)(unsigned)off, (int)(off >> 32), dy, dx);
}
__device__ __forceinline__ alx_index conv_tap_offset(const ConvTap& t) {
  return (alx_index)(((unsigned long long)(unsigned)t.y << 32) | (unsigned)t.x);
}

// The slice logic both gathered stagers share: thread t stages a fixed row or column t % R of the
// tile at k = t / R + j * K_PER_PASS, j < PASSES, through Stager::element<TAIL>(j, k_count) (the
// element at that k, 0 past k_count in a ragged slice); kk is the slice's first table entry.
template <class Stager, class Tile, int R, typename T>
struct StageTapsSlice {
  static constexpr bool BOUNDED = false;  // needs stage<true> for a ragged slice
  static constexpr int K_PER_PASS = Tile::THREADS / R, PASSES = Tile::BK / K_PER_PASS;
  static_assert(Tile::THREADS % R == 0 && Tile::BK % K_PER_PASS == 0 && PASSES >= 1,
                "the block's threads cover the slice's rows (or columns) and k exactly");
  int kk;       // the current slice's first entry
  T v[PASSES];  // the fetched slice
  __device__ __forceinline__ int k_of(int j) const { return threadIdx.x / R + j * K_PER_PASS; }
  template <bool TAIL>
  __device__ __forceinline__ T at(int j, int k_count) const {
    return static_cast<const Stager*>(this)->template element<TAIL>(j, k_count);
  }
  template <bool TAIL>
  __device__ __forceinline__ void fetch(int k_count) {
#pragma unroll
    for (int j = 0; j < PASSES; ++j) v[j] = at<TAIL>(j, k_count);
    kk += Tile::BK;
  }
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&S)[Tile::BK][R + Tile::PAD], int k_count) {
#pragma unroll
    for (int j = 0; j < PASSES; ++j) S[k_of(j)][threadIdx.x % R] = at<TAIL>(j, k_count);
    kk += Tile::BK;
  }
  __device__ __forceinline__ void put(T (&S)[Tile::BK][R + Tile::PAD]) const {
#pragma unroll
    for (int j = 0; j < PASSES; ++j) S[k_of(j)][threadIdx.x % R] = v[j];
  }
};

// B operand, one fixed column per thread (consecutive threads on consecutive columns). A column
// past N stages the last column again (it only reaches outputs that are not written).
template <class Tile, int R, typename T>
struct StageTapsAcrossK : StageTapsSlice<StageTapsAcrossK<Tile, R, T>, Tile, R, T> {
  typedef StageTapsSlice<StageTapsAcrossK<Tile, R, T>, Tile, R, T> Slice;
  const char* col;      // the column's base element (col + off is the tap's element when inside)
  int y0, x0;           // the column's base pixel
  unsigned h, w;        // the gathered image's size
  ConvTap* taps;        // the chunk's table
  // the element of this thread's column at the slice's k = k_of(j)
  template <bool TAIL>
  __device__ __forceinline__ T element(int j, int k_count) const {
    const int k = Slice::k_of(j);
    const ConvTap t = taps[Slice::kk + k];
    // & rather than &&: both compares and one predicated load, no branch
    const bool inside = ((unsigned)(y0 + t.z) < h) & ((unsigned)(x0 + t.w) < w) & (!TAIL || k < k_count);
    return inside ? *(const T*)(col + conv_tap_offset(t)) : T(0);
  }
};

// A operand of R tile rows, row r at a[r * ld] + a_off(k) bytes, r < rows; thread t always stages
// row t % R (clamped to the last row: rows past the matrix only reach outputs that are not
// written).
template <class Tile, int R, typename T>
struct StageTapsRows : StageTapsSlice<StageTapsRows<Tile, R, T>, Tile, R, T> {
  typedef StageTapsSlice<StageTapsRows<Tile, R, T>, Tile, R, T> Slice;
  const char* p;        // this thread's row
  alx_index* offs;      // the chunk's a_off table (bytes)
  __device__ void init(const T* a, alx_index ld, int rows) {
    const int r = threadIdx.x % R;
    p = (const char*)(a + (r < rows ? r : rows - 1) * ld);
  }
  template <bool TAIL>
  __device__ __forceinline__ T element(int j, int k_count) const {
    const int k = Slice::k_of(j);
    return (!TAIL || k < k_count) ? *(const T*)(p + offs[Slice::kk + k]) : T(0);
  }
};

// The stager of gemm_tile.cuh for a convolution: operand A (a plain StageRowsAlongK or a
// StageTapsRows), operand B a StageTapsAcrossK, and the per-chunk table: thread t fills entry t
// with tap = (*fill)(c0 + t, a_off) (zeros past the chunk's end, where TAIL staging reads no entry).
template <class Tile, typename T, class StageA, class Taps, bool A_TAPS>
struct ConvStager : StagePair<Tile, T, StageA, StageTapsAcrossK<Tile, Tile::BN, T>> {
  static constexpr alx_index CHUNK = CONV_CHUNK;
  static_assert(Tile::THREADS == CONV_CHUNK, "one table entry per thread");
  const Taps* fill;  // in shared memory (out of registers across the K loop)
  // b.taps and a.offs (A_TAPS): CONV_CHUNK entries in shared memory, written by prepare
  __device__ void prepare(alx_index c0, alx_index count) {
    ConvTap t = conv_tap(0, 0, 0);
    alx_index a_off = 0;
    if (threadIdx.x < count) t = (*fill)(c0 + threadIdx.x, a_off);
    this->b.taps[threadIdx.x] = t;
    if constexpr (A_TAPS) this->a.offs[threadIdx.x] = a_off;
    __syncthreads();
    this->b.kk = 0;
    if constexpr (A_TAPS) this->a.kk = 0;
  }
};

// Block-wide sizes the epilogue needs, parked in shared memory across the K loop (held in registers
// through it they cost registers or spills); written by thread 0 before the loop.
struct ConvOutputSize {
  alx_index plane;     // pixels per output plane (of the phase); backward weight: the split's offset in out
  alx_index N;         // columns of the product
  int rows;            // rows of the product
  int channel0;        // the output channel of row 0 (the group's first)
};

// ---- the forward's B operand: one image window per column -------------------------------------
// B(k, n) = x[img, g*Cg + c, y0 + fy, x0 + fx] for k = (c, fy, fx), the column's window at (y0, x0):
//   column base x[img, g*Cg, y0, x0], tap off = (c*H + fy)*W + fx, (dy, dx) = (fy, fx)
template <typename T>
struct ConvForwardTaps {
  int KW, KK, H, W;
  __device__ ConvTap operator()(alx_index k, alx_index&) const {
    const int kk = (int)k, c = kk / KK, r = kk - c * KK, fy = r / KW, fx = r - fy * KW;
    return conv_tap((((alx_index)c * H + fy) * W + fx) * (alx_index)sizeof(T), fy, fx);
  }
};
