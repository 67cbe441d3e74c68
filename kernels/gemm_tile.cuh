// gemm_tile.cuh: the register-blocked tile product shared by every matrix-multiply kernel
// (kernels/conv2d.cu as implicit GEMM, kernels/gemm.cu for the fully connected layers).
//
// Computes one BM x BN tile of C = A * B, with A (M x K) and B (K x N) written into shared memory
// slice by slice by a kernel-specific "stager", so the same inner loop serves plain matrices and
// convolutions read in place (no im2col buffer).
//
// Tiling: a block of 256 threads owns a BM x BN tile of C; each thread owns a TM x TN register
// tile (rows TM*(tid / (BN/TN)) .. +TM-1, columns TN*(tid % (BN/TN)) .. +TN-1): 4 x 4 for the
// 4096-output tiles in use, (64, 64) in general, (16, 256) when M is small (few filters), (256, 16)
// when N is small (a fully connected layer's batch); the op picks the one that wastes the least
// work (alexnet_raw/ops/gemm_tiles.py, the one place tile shapes are chosen). (8 x 4 / 4 x 8 for
// 8192-output tiles is supported but spills at float's 64-register budget.) K is walked in BK = 16
// deep slices: the stager writes As[k][m] (BK x BM) and Bs[k][n] (BK x BN) (rows padded by 4
// elements: transposed stores spread over banks, and 16-byte alignment is kept for vector loads),
// one barrier, then each thread does BK rank-1 updates of its tile from TM + TN contiguous shared
// loads (128-bit in float), another barrier.
// K is also cut into chunks of Stager::CHUNK (a multiple of BK): before each chunk the stager may
// build a per-chunk table in shared memory (conv2d.cu's gathered operands: each k's offsets, so the
// K loop has no integer division; the plain-matrix stagers here use one chunk and no table). Within
// a chunk, whole slices are staged without any k bound check; a ragged last slice is staged
// separately with checks (zeros past k_end), unless the stager is BOUNDED (reads zeros past K by
// itself).
// Operand stagers for plain matrices (StageRowsAlongK: tile rows contiguous along K;
// StageRowsAcrossK: tile rows contiguous in memory) give each thread one fixed tile row and a
// pointer that moves by one slice per step, so staging costs a load, a store and at most a pointer
// add per element, with no bounds check in whole slices. Rows past the matrix read the last row
// again (a thread's row is fixed, so its pointer stays valid); such rows only reach outputs past M
// or N, which are never written.
// Deterministic: each output is one thread's sum over k in increasing order.
//
// The progression (numbered as SGEMM_CUDA's and llm.c's dev/cuda; each version is its own set of
// instantiations, selectable with alexnet_raw.ops.gemm_tiles.forced, reported by `alexnet-raw
// kernels`):
//   v1  BM x BN = 64 x 64 (and the thin 16 x 256 / 256 x 16), 4 x 4 outputs per thread, one shared
//       buffer, two barriers per slice; 4 blocks per SM (<= 64 registers) in float.
//   v2  128 x 128 (8 x 8 outputs per thread), 128 x 64 and 64 x 128 (8 x 4, 4 x 8): each staged
//       element and each 16-byte shared load feeds twice the FFMAs of v1; 2 blocks per SM (<= 128
//       registers). Float only (the double kernels serve gradient checks).
#pragma once

#include "common.cuh"

// Resident blocks of 256 threads per SM the register budget is set for: float tiles of 4 x 4
// outputs per thread 4 (<= 64 registers, 50% occupancy), larger ones 2 (<= 128); double 2 and 1.
#define ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN) \
  __launch_bounds__(256, ((BM) * (BN) / 256 <= 16 ? 4 : 2) / (sizeof(T) == 4 ? 1 : 2))

template <int BM_, int BN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_;
  static constexpr int TM = BM * BN == 256 * 16 ? 4 : (BM >= BN ? 8 : 4), TN = BM * BN / 256 / TM;
  static constexpr int BK = 16, PAD = 4;
  static constexpr int COLS = BN / TN;  // threads across a tile row
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static_assert(THREADS == 256, "tile shapes are chosen for 256 threads");
};

// Rows [row, row + TM) and columns [col, col + TN) of the block's tile belong to this thread.
template <class Tile>
__device__ __forceinline__ int tile_thread_row() {
  return (threadIdx.x / Tile::COLS) * Tile::TM;
}
template <class Tile>
__device__ __forceinline__ int tile_thread_col() {
  return (threadIdx.x % Tile::COLS) * Tile::TN;
}

// Operand of R tile rows stored with K contiguous: element (r, k) = p[r * ld + k], rows r < rows.
// Thread t stages row t % R (clamped to the last row) at KPT consecutive k from (t / R) * KPT: one
// pointer, the loads at constant offsets from it (consecutive threads on consecutive rows; the
// rows' slices are read over KPT loads, from L1 after the first).
template <class Tile, int R, typename T>
struct StageRowsAlongK {
  static constexpr bool BOUNDED = false;  // needs stage<true> for a ragged slice
  static constexpr int KPT = R * Tile::BK / 256;  // k per thread and slice
  const T* p;  // this thread's first element of the current slice
  __device__ void init(const T* first_row, alx_index ld, alx_index rows, alx_index k_begin) {
    const alx_index r = threadIdx.x % R;
    p = first_row + (r < rows ? r : rows - 1) * ld + k_begin + (threadIdx.x / R) * KPT;
  }
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&S)[Tile::BK][R + Tile::PAD], int k_count) {
    const int k = (threadIdx.x / R) * KPT, r = threadIdx.x % R;
#pragma unroll
    for (int i = 0; i < KPT; ++i) S[k + i][r] = (!TAIL || k + i < k_count) ? p[i] : T(0);
    p += Tile::BK;
  }
};

// Operand of R tile rows contiguous in memory, K across: element (r, k) = p[k * ld + r], r < rows.
// Thread t always stages row t % R (clamped to the last row), at k = t / R + j * (256 / R).
template <class Tile, int R, typename T>
struct StageRowsAcrossK {
  static constexpr bool BOUNDED = false;
  static constexpr int K_STEP = 256 / R, PASSES = Tile::BK / K_STEP;
  const T* p;      // this thread's element of the current slice, at its first k
  alx_index step;  // ld * K_STEP
  __device__ void init(const T* first_row, alx_index ld, alx_index rows, alx_index k_begin) {
    const alx_index r = threadIdx.x % R;
    p = first_row + (r < rows ? r : rows - 1) + (k_begin + threadIdx.x / R) * ld;
    step = ld * K_STEP;
  }
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&S)[Tile::BK][R + Tile::PAD], int k_count) {
    const int k = threadIdx.x / R;
#pragma unroll
    for (int j = 0; j < PASSES; ++j) {
      S[j * K_STEP + k][threadIdx.x % R] = (!TAIL || k + j * K_STEP < k_count) ? p[0] : T(0);
      p += step;
    }
  }
};

// A stager of two operand stagers, with no per-chunk table.
template <class Tile, typename T, class StageA, class StageB>
struct StagePair {
  static constexpr alx_index CHUNK = (alx_index)1 << 62;  // one chunk: nothing to prepare
  static constexpr bool BOUNDED = StageA::BOUNDED && StageB::BOUNDED;
  StageA a;
  StageB b;
  __device__ void prepare(alx_index, alx_index) {}
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&As)[Tile::BK][Tile::BM + Tile::PAD], T (&Bs)[Tile::BK][Tile::BN + Tile::PAD],
                                        int k_count) {
    a.template stage<TAIL>(As, k_count);
    b.template stage<TAIL>(Bs, k_count);
  }
};

// acc += As * Bs over one staged slice, for this thread's TM x TN outputs.
template <class Tile, typename T>
__device__ __forceinline__ void gemm_tile_multiply(const T (&As)[Tile::BK][Tile::BM + Tile::PAD],
                                                   const T (&Bs)[Tile::BK][Tile::BN + Tile::PAD], int row, int col,
                                                   T (&acc)[Tile::TM][Tile::TN]) {
#pragma unroll
  for (int k = 0; k < Tile::BK; ++k) {
    T a[Tile::TM], b[Tile::TN];
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) a[i] = As[k][row + i];
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) b[j] = Bs[k][col + j];
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
      for (int j = 0; j < Tile::TN; ++j) acc[i][j] += a[i] * b[j];
  }
}

// The type counting slices: int when it can hold the count, else alx_index.
template <bool FITS_INT>
struct GemmCount { typedef int type; };
template <>
struct GemmCount<false> { typedef alx_index type; };
template <typename I>
struct GemmSame { typedef I type; };  // k_begin takes the type of k_end (not deduced from it)

// acc += A[k_begin:k_end) * B[k_begin:k_end) for this thread's tile. Every thread of the block
// must call it with the same range (it holds barriers). The stager provides CHUNK, a
// BOUNDED (whether its stage<false> already reads zeros past the end), a
// `prepare(c0, count)` run by every thread before each chunk of `count` k values from c0 (with its
// own barrier if it writes shared memory), and `stage<TAIL>(As, Bs, k_count)` writing the next
// slice (and moving on by one slice); with TAIL only its first k_count k are real, the rest 0.
// I: the type of k (int when K < 2^31 is known, else alx_index); k_end is read through a reference
// (a kernel may keep it in shared memory, out of registers across the loop).
template <class Tile, typename T, class Stager, typename I>
__device__ __forceinline__ void gemm_tile_accumulate(T (&As)[Tile::BK][Tile::BM + Tile::PAD],
                                                     T (&Bs)[Tile::BK][Tile::BN + Tile::PAD], Stager& stager,
                                                     typename GemmSame<I>::type k_begin, const I& k_end,
                                                     T (&acc)[Tile::TM][Tile::TN]) {
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
  // slices of a chunk counted in int when a chunk is short enough (a conv's table chunk)
  typedef typename GemmCount<Stager::CHUNK / Tile::BK <= 0x7fffffff>::type Slices;
  for (I c0 = k_begin, count; c0 < k_end; c0 += count) {
    count = k_end - c0 < Stager::CHUNK ? k_end - c0 : (I)Stager::CHUNK;
    stager.prepare(c0, count);
    // a BOUNDED stager zeros past the end by itself: its ragged slice needs no second copy
    for (Slices slices = (Slices)(Stager::BOUNDED ? (count + Tile::BK - 1) / Tile::BK : count / Tile::BK); slices > 0;
         --slices) {
      stager.template stage<false>(As, Bs, Tile::BK);
      __syncthreads();
      gemm_tile_multiply<Tile>(As, Bs, row, col, acc);
      __syncthreads();
    }
    const int tail = Stager::BOUNDED ? 0 : (int)(count % Tile::BK);
    if (tail) {
      stager.template stage<true>(As, Bs, tail);
      __syncthreads();
      gemm_tile_multiply<Tile>(As, Bs, row, col, acc);
      __syncthreads();
    }
  }
}
