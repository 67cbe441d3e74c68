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
// Every stager stages a slice in one (stage<TAIL>(S, k_count): each element loaded and stored in
// turn, versions 1 and 2) or in two (v3 on: fetch<TAIL>(k_count) loads the next slice's elements
// into the stager's registers and moves on by one slice, put(S) stores them; the pipelined loop
// runs the multiply between them).
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
//       registers). Float; in double at 128 x 128 only (1 block per SM), for the tests' float64
//       checks of the version's code (the automatic choice gives double products version 1).
//   v3  v2's tiles, double-buffered (gemm_tile_accumulate_pipelined): two shared buffers; while
//       slice s is multiplied from one, slice s + 1's global loads are in flight into registers
//       (the stager's fetch), stored into the other buffer after the multiply (put): one barrier
//       per slice, and no thread waits at a barrier for its own global loads.
//   v4  v3 plus 16-byte global loads for the plain-matrix operands (StageRowsAlongK: 4 consecutive
//       k of a row, 2 in double; StageRowsAcrossK: 4 (2) consecutive rows at one k, stored by one
//       16-byte shared store) in a block whose operands are 16-byte aligned (base addresses and leading
//       dimensions) and whose across-K tile rows are all inside the matrix (decided per block,
//       uniform over it), else v3's scalar loop in the same kernel (the ragged edge blocks, odd
//       leading dimensions). gemm.cu only: a convolution's gathered operands stay scalar
//       (consecutive k or columns are not consecutive in memory) and its one plain operand, the
//       forward's weights, saves 6 of ~1220 hot-loop instructions per slice by 16-byte loads and
//       needs the registers that 2 blocks per SM leave (measured: 88 bytes of spills at 128 x 128).
//       Versions 3 and 4 in double: at 64 x 64 (two 128 x 128 double buffers exceed 48 KB of static
//       shared memory), for the tests' float64 checks.
// Not used: cp.async (sm_80+): the CPU runtime does not model its asynchronous copy (data landing
// at cp.async.wait_group), and a kernel is only written here if the CPU runtime runs it as the GPU
// does.
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

// The type counting slices: int when it can hold the count, else alx_index.
template <bool FITS_INT>
struct GemmCount { typedef int type; };
template <>
struct GemmCount<false> { typedef alx_index type; };
// Rows [row, row + TM) and columns [col, col + TN) of the block's tile belong to this thread.
template <class Tile>
__device__ __forceinline__ int tile_thread_row() {
  return (threadIdx.x / Tile::COLS) * Tile::TM;
}
template <class Tile>
__device__ __forceinline__ int tile_thread_col() {
  return (threadIdx.x % Tile::COLS) * Tile::TN;
}

// 16-byte global (and shared) accesses of version 4: 4 floats or 2 doubles, from or into a
// thread's registers v[0 .. LANES). The address must be 16-byte aligned.
template <typename T>
struct Vec16;
template <>
struct Vec16<float> {
  static constexpr int LANES = 4;
  __device__ static __forceinline__ void load(const float* p, float* v) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  }
  __device__ static __forceinline__ void store(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};
template <>
struct Vec16<double> {
  static constexpr int LANES = 2;
  __device__ static __forceinline__ void load(const double* p, double* v) {
    const double2 q = *reinterpret_cast<const double2*>(p);
    v[0] = q.x;
    v[1] = q.y;
  }
  __device__ static __forceinline__ void store(double* p, const double* v) {
    *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
  }
};

// Operand of R tile rows stored with K contiguous: element (r, k) = p[r * ld + k], rows r < rows.
// Thread t stages row t % R (clamped to the last row) at KPT consecutive k from (t / R) * KPT: one
// pointer, the loads at constant offsets from it (consecutive threads on consecutive rows; the
// rows' slices are read over KPT loads, from L1 after the first). VEC (v4): KPT / LANES loads of
// 16 bytes (needs the row starts, k_begin and ld 16-byte aligned: `aligned`), except in a ragged
// slice.
template <class Tile, int R, typename T, bool VEC = false>
struct StageRowsAlongK {
  static constexpr bool BOUNDED = false;  // needs stage<true> for a ragged slice
  static constexpr int KPT = R * Tile::BK / Tile::THREADS;  // k per thread and slice
  static_assert(KPT >= 1 && R * Tile::BK % Tile::THREADS == 0, "every thread stages whole k of one row");
  static_assert(!VEC || KPT % (16 / sizeof(T)) == 0, "16-byte loads: whole loads of k per thread");
  const T* p;  // this thread's first element of the current slice
  T v[KPT];    // the fetched slice
  __device__ void init(const T* first_row, alx_index ld, alx_index rows, alx_index k_begin) {
    const alx_index r = threadIdx.x % R;
    p = first_row + (r < rows ? r : rows - 1) * ld + k_begin + (threadIdx.x / R) * KPT;
  }
  // whether the VEC loads are aligned for this operand (every thread of the block agrees)
  __device__ static bool aligned(const T* first_row, alx_index ld, alx_index k_begin) {
    return ((unsigned long long)(first_row + k_begin) % 16 == 0) && ld % (16 / sizeof(T)) == 0;
  }
  template <bool TAIL>
  __device__ __forceinline__ void fetch(int k_count) {
    if constexpr (VEC && !TAIL) {
      constexpr int LANES = Vec16<T>::LANES;
#pragma unroll
      for (int i = 0; i < KPT / LANES; ++i) Vec16<T>::load(p + LANES * i, v + LANES * i);
    } else {
#pragma unroll
      for (int i = 0; i < KPT; ++i) v[i] = element<TAIL>(i, k_count);
    }
    p += Tile::BK;
  }
  __device__ __forceinline__ void put(T (&S)[Tile::BK][R + Tile::PAD]) const {
    const int k = (threadIdx.x / R) * KPT, r = threadIdx.x % R;
#pragma unroll
    for (int i = 0; i < KPT; ++i) S[k + i][r] = v[i];
  }
  // element i of this thread's k in the current slice (0 past k_count in a ragged one)
  template <bool TAIL>
  __device__ __forceinline__ T element(int i, int k_count) const {
    return (!TAIL || (threadIdx.x / R) * KPT + i < k_count) ? p[i] : T(0);
  }
  // fetch and put in one (each element loaded and stored in turn: no registers held for the slice)
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&S)[Tile::BK][R + Tile::PAD], int k_count) {
    static_assert(!VEC, "the 16-byte loads are version 4's, which fetches and puts");
    const int k = (threadIdx.x / R) * KPT, r = threadIdx.x % R;
#pragma unroll
    for (int i = 0; i < KPT; ++i) S[k + i][r] = element<TAIL>(i, k_count);
    p += Tile::BK;
  }
};

// Operand of R tile rows contiguous in memory, K across: element (r, k) = p[k * ld + r], r < rows.
// Thread t always stages row t % R (clamped to the last row), at k = t / R + j * (256 / R).
// VEC (v4): thread t stages LANES (16 bytes) consecutive rows from LANES * (t % (R / LANES)) at
// k = t / (R / LANES) + j * (256 * LANES / R), one 16-byte load and one 16-byte shared store per
// k; only for a tile whose R rows are all inside the
// matrix, with the matrix and ld 16-byte aligned (`aligned`; the kernel takes the scalar path
// otherwise).
template <class Tile, int R, typename T, bool VEC = false>
struct StageRowsAcrossK {
  static constexpr bool BOUNDED = false;
  static constexpr int LANES = VEC ? 16 / (int)sizeof(T) : 1;  // rows per thread and k
  static constexpr int GROUPS = R / LANES;   // threads across the tile's rows
  static constexpr int K_STEP = Tile::THREADS / GROUPS, PASSES = Tile::BK / K_STEP;
  static_assert(Tile::THREADS % GROUPS == 0 && Tile::BK % K_STEP == 0 && PASSES >= 1,
                "the block's threads cover the slice's rows and k exactly");
  static_assert(!VEC || R % LANES == 0, "16-byte loads: the tile's rows in whole loads");
  const T* p;      // this thread's (first) element of the current slice, at its first k
  typename GemmCount<VEC>::type step;  // ld * K_STEP elements (VEC: an int, `aligned` checks it fits)
  T v[PASSES][LANES];  // the fetched slice
  __device__ void init(const T* first_row, alx_index ld, alx_index rows, alx_index k_begin) {
    const alx_index r = (threadIdx.x % GROUPS) * LANES;  // VEC: rows >= R (all inside)
    p = first_row + (VEC || r < rows ? r : rows - 1) + (k_begin + threadIdx.x / GROUPS) * ld;
    step = (typename GemmCount<VEC>::type)(ld * K_STEP);
  }
  __device__ static bool aligned(const T* first_row, alx_index ld, alx_index k_begin) {
    return ((unsigned long long)(first_row + k_begin * ld) % 16 == 0) && ld % (16 / sizeof(T)) == 0 &&
           ld * K_STEP <= 0x7fffffff;
  }
  template <bool TAIL>
  __device__ __forceinline__ void fetch(int k_count) {
    const int k = threadIdx.x / GROUPS;
#pragma unroll
    for (int j = 0; j < PASSES; ++j) {
      const bool real = !TAIL || k + j * K_STEP < k_count;
      if constexpr (VEC) {
        if (real) {
          Vec16<T>::load(p, v[j]);
        } else {
#pragma unroll
          for (int i = 0; i < LANES; ++i) v[j][i] = T(0);
        }
      } else {
        v[j][0] = real ? p[0] : T(0);
      }
      p += step;
    }
  }
  __device__ __forceinline__ void put(T (&S)[Tile::BK][R + Tile::PAD]) const {
    const int k = threadIdx.x / GROUPS, r = (threadIdx.x % GROUPS) * LANES;
#pragma unroll
    for (int j = 0; j < PASSES; ++j) {
      if constexpr (VEC) {
        Vec16<T>::store(&S[j * K_STEP + k][r], v[j]);
      } else {
        S[j * K_STEP + k][r] = v[j][0];
      }
    }
  }
  // fetch and put in one (each element loaded and stored in turn: no registers held for the slice)
  template <bool TAIL>
  __device__ __forceinline__ void stage(T (&S)[Tile::BK][R + Tile::PAD], int k_count) {
    static_assert(!VEC, "the 16-byte loads are version 4's, which fetches and puts");
    const int k = threadIdx.x / GROUPS, r = threadIdx.x % GROUPS;
#pragma unroll
    for (int j = 0; j < PASSES; ++j) {
      S[j * K_STEP + k][r] = (!TAIL || k + j * K_STEP < k_count) ? p[0] : T(0);
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
  __device__ __forceinline__ void fetch(int k_count) {
    a.template fetch<TAIL>(k_count);
    b.template fetch<TAIL>(k_count);
  }
  __device__ __forceinline__ void put(T (&As)[Tile::BK][Tile::BM + Tile::PAD], T (&Bs)[Tile::BK][Tile::BN + Tile::PAD]) const {
    a.put(As);
    b.put(Bs);
  }
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

template <typename I>
struct GemmSame { typedef I type; };  // k_begin takes the type of k_end (not deduced from it)

// acc += A[k_begin:k_end) * B[k_begin:k_end) for this thread's tile. Every thread of the block
// must call it with the same range (it holds barriers). The stager provides CHUNK, a
// BOUNDED (whether its stage<false> already reads zeros past the end), a
// `prepare(c0, count)` run by every thread before each chunk of `count` k values from c0 (with its
// own barrier if it writes shared memory), `fetch<TAIL>(k_count)` loading the next slice into its
// registers (and moving on by one slice; with TAIL only its first k_count k are real, the rest 0),
// `put(As, Bs)` storing them, and `stage<TAIL>(As, Bs, k_count)`, the two in a row.
// I: the type of k (int when K < 2^31 is known, else alx_index); k_end is read through a reference
// (a kernel may keep it in shared memory, out of registers across the loop).
// Versions 1 and 2: one shared buffer, stage / barrier / multiply / barrier per slice.
template <class Tile, typename T, class Stager, typename I>
__device__ __forceinline__ void gemm_tile_accumulate_single_buffer(T (&As)[Tile::BK][Tile::BM + Tile::PAD],
                                                                   T (&Bs)[Tile::BK][Tile::BN + Tile::PAD],
                                                                   Stager& stager, typename GemmSame<I>::type k_begin,
                                                                   const I& k_end, T (&acc)[Tile::TM][Tile::TN]) {
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

// Version 3 on: two shared buffers. Slice s + 1 is fetched into registers, slice s multiplied from
// buffer s % 2, then slice s + 1 put into the other buffer, one barrier: the barrier after slice
// s - 1's multiply ordered every read of that buffer before this write, and this barrier orders the
// write before slice s + 1's multiply. A chunk ends with a barrier (the next chunk's table and first
// put follow).
template <class Tile, typename T, class Stager, typename I>
__device__ __forceinline__ void gemm_tile_accumulate_pipelined(T (&As)[2][Tile::BK][Tile::BM + Tile::PAD],
                                                               T (&Bs)[2][Tile::BK][Tile::BN + Tile::PAD],
                                                               Stager& stager, typename GemmSame<I>::type k_begin,
                                                               const I& k_end, T (&acc)[Tile::TM][Tile::TN]) {
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
  typedef typename GemmCount<Stager::CHUNK / Tile::BK <= 0x7fffffff>::type Slices;
  for (I c0 = k_begin, count; c0 < k_end; c0 += count) {
    count = k_end - c0 < Stager::CHUNK ? k_end - c0 : (I)Stager::CHUNK;
    stager.prepare(c0, count);
    const Slices whole = (Slices)(Stager::BOUNDED ? (count + Tile::BK - 1) / Tile::BK : count / Tile::BK);
    if (whole > 0) {
      stager.template fetch<false>(Tile::BK);
    } else {
      stager.template fetch<true>((int)(count % Tile::BK));
    }
    stager.put(As[0], Bs[0]);
    __syncthreads();
    // slice s - 1 is in buffer (s - 1) % 2, slice s goes to buffer s % 2
    for (Slices s = 1; s < whole; ++s) {
      stager.template fetch<false>(Tile::BK);
      gemm_tile_multiply<Tile>(As[(s - 1) & 1], Bs[(s - 1) & 1], row, col, acc);
      stager.put(As[s & 1], Bs[s & 1]);
      __syncthreads();
    }
    int last = whole > 0 ? (int)((whole - 1) & 1) : 0;  // the buffer of the last slice put
    const int tail = Stager::BOUNDED ? 0 : (int)(count % Tile::BK);
    if (tail && whole > 0) {
      stager.template fetch<true>(tail);
      gemm_tile_multiply<Tile>(As[last], Bs[last], row, col, acc);
      stager.put(As[last ^ 1], Bs[last ^ 1]);
      __syncthreads();
      last ^= 1;
    }
    gemm_tile_multiply<Tile>(As[last], Bs[last], row, col, acc);
    __syncthreads();
  }
}

// What a version of the progression changes in a kernel: its shared buffers and 16-byte loads.
template <int V>
struct GemmVersion {
  static_assert(V >= 1 && V <= 4, "versions 1 to 4 of gemm_tile.cuh's progression");
  static constexpr int BUFFERS = V >= 3 ? 2 : 1;
  static constexpr bool VECTOR_LOADS = V >= 4;
};

// The K loop of a kernel whose shared operands are As[BUFFERS][BK][BM + PAD], Bs likewise: one
// buffer is versions 1 and 2's loop, two version 3's pipeline.
template <class Tile, int BUFFERS, typename T, class Stager, typename I>
__device__ __forceinline__ void gemm_tile_accumulate(T (&As)[BUFFERS][Tile::BK][Tile::BM + Tile::PAD],
                                                     T (&Bs)[BUFFERS][Tile::BK][Tile::BN + Tile::PAD], Stager& stager,
                                                     typename GemmSame<I>::type k_begin, const I& k_end,
                                                     T (&acc)[Tile::TM][Tile::TN]) {
  if constexpr (BUFFERS == 1) {
    gemm_tile_accumulate_single_buffer<Tile>(As[0], Bs[0], stager, k_begin, k_end, acc);
  } else {
    static_assert(BUFFERS == 2, "one or two shared buffers");
    gemm_tile_accumulate_pipelined<Tile>(As, Bs, stager, k_begin, k_end, acc);
  }
}
