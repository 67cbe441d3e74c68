// conv2d.cu: 2-D convolution (cross-correlation, as torch.nn.functional.conv2d) with zero padding,
// stride and groups, forward and both backwards, as implicit GEMMs on the shared register-blocked
// tile (kernels/gemm_tile.cuh). No im2col buffer: the loaders read the images in place.
//
//   forward          y[n, f, oy, ox] = b[f] + sum_{c, fy, fx} w[f, c, fy, fx] * x[n, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx]
//   backward input   gx[n, c, iy, ix] = sum_{f, fy, fx} w[f, c', fy, fx] * gy[n, f, oy, ox]  over oy*sh - ph + fy = iy, ...
//   backward weight  gw[f, c, fy, fx] = sum_{n, oy, ox} gy[n, f, oy, ox] * x[n, g*Cg + c, oy*sh - ph + fy, ...]
// (f in group g = f / Fg reads channels g*Cg .. g*Cg + Cg - 1; pixels outside the input read 0, which
// also gives cuda-convnet's ceil output rule: its extra right/bottom outputs read zeros.)
//
// Layout: NCHW x, y, gx, gy; weights (F, Cg, KH, KW), all C-contiguous. Cg = C / groups, Fg = F / groups.
// Tiling: GemmTile<BM, BN> (256 threads, 4 x 4 outputs each, 16-deep K slices), grid
// (ceil(N / BN), ceil(M / BM), groups [x splits]):
//   forward          M = Fg (filters),   N = batch*OH*OW, K = Cg*KH*KW; A = w rows (K-contiguous), B = x gathered
//   backward input   one product per stride phase (py, px) = ((iy + ph) % sh, (ix + pw) % sw), whose
//                    pixels only meet taps fy = py + jy*sh, fx = px + jx*sw (no multiply by a
//                    structural zero): M = Cg (channels), N = batch * the phase's pixels,
//                    K = Fg*taps_y*taps_x; A = w, B = gy gathered; grid z = groups * sh * sw
//   backward weight  M = Fg,  N = Cg*KH*KW,  K = batch*OH*OW, split into `splits` ranges of whole slices
//                    (grid z = groups * splits) written to a workspace and summed in split order by
//                    conv2d_sum_splits, so the result does not depend on how blocks are scheduled.
// Launch geometry (tile shape, splits): alexnet_raw/ops/conv2d.py. Bias gradient: kernels/bias_grad.cu.
// Reference and tests: tests/kernels/test_conv2d.py.
#include "common.cuh"
#include "gemm_tile.cuh"

struct ConvShape {
  int C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups;
  __device__ int Cg() const { return C / groups; }
  __device__ int Fg() const { return F / groups; }
  __device__ int KK() const { return KH * KW; }
};

// ---- forward ------------------------------------------------------------------------------------
// A(m, k) = w[g*Fg + m, k] with k = (c, fy, fx): a K-contiguous matrix (StageRowsAlongK)
// B(k, n) = x[img, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx], k = (c, fy, fx), n = (img, oy, ox) fixed per thread
template <typename T>
struct ConvInputColumn {
  const T* x;  // channel 0 of the group in this column's image; null when the column is past N
  int iy0, ix0, K;
  ConvShape s;
  __device__ T operator()(alx_index k) const {
    if (x == nullptr || k >= K) return T(0);
    const int kk = (int)k, c = kk / s.KK(), r = kk - c * s.KK(), fy = r / s.KW, fx = r - fy * s.KW;
    const int iy = iy0 + fy, ix = ix0 + fx;
    if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return T(0);
    return x[((alx_index)c * s.H + iy) * s.W + ix];
  }
};

template <typename T, int BM, int BN>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T)
conv2d_forward(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, int has_bias,
               int batch, int C, int H, int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw,
               int groups) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Tile::BK][Tile::BN + Tile::PAD];
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z, Fg = s.Fg(), K = s.Cg() * s.KK();
  const alx_index plane = (alx_index)OH * OW, N = batch * plane;
  const int m0 = blockIdx.y * BM;
  const alx_index n0 = (alx_index)blockIdx.x * BN;

  StagePair<Tile, T, StageRowsAlongK<Tile, BM, T>, StageLoadAcrossK<Tile, BN, T, ConvInputColumn<T>, int>> stager;
  stager.a.init(w + ((alx_index)g * Fg + m0) * K, K, Fg - m0, 0);
  ConvInputColumn<T>& load_b = stager.b.load;
  load_b = {nullptr, 0, 0, K, s};
  stager.b.k0 = 0;
  {
    const alx_index n = n0 + threadIdx.x % BN;
    if (n < N) {
      const alx_index img = n / plane;
      const int q = (int)(n - img * plane), oy = q / OW, ox = q - oy * OW;
      load_b.x = x + (img * C + (alx_index)g * s.Cg()) * H * W;
      load_b.iy0 = oy * sh - ph;
      load_b.ix0 = ox * sw - pw;
    }
  }
  T acc[Tile::TM][Tile::TN] = {};
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, K, acc);

  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int j = 0; j < Tile::TN; ++j) {
    const alx_index n = n0 + col + j;
    if (n >= N) continue;
    const alx_index img = n / plane, q = n - img * plane;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
      const int m = m0 + row + i;
      if (m >= Fg) continue;
      const int f = g * Fg + m;
      y[(img * F + f) * plane + q] = acc[i][j] + (has_bias ? bias[f] : T(0));
    }
  }
}

// ---- backward to the input ----------------------------------------------------------------------
// Split by stride phase so that no multiply-add meets a structural zero: input pixels with
// (iy + ph) % sh == py receive gradient only from taps fy = py, py + sh, ... (and likewise in x), so
// each phase (py, px) is its own product with K = Fg * taps_y * taps_x. Grid z = groups * sh * sw.
struct ConvPhase {
  int py, px, taps_y, taps_x, first_y, first_x, count_y, count_x;  // first/count: the phase's input rows/columns
  __device__ ConvPhase(const ConvShape& s, int phase) {
    py = phase / s.sw;
    px = phase - py * s.sw;
    taps_y = py < s.KH ? (s.KH - py + s.sh - 1) / s.sh : 0;
    taps_x = px < s.KW ? (s.KW - px + s.sw - 1) / s.sw : 0;
    first_y = ((py - s.ph) % s.sh + s.sh) % s.sh;
    first_x = ((px - s.pw) % s.sw + s.sw) % s.sw;
    count_y = first_y < s.H ? (s.H - 1 - first_y) / s.sh + 1 : 0;
    count_x = first_x < s.W ? (s.W - 1 - first_x) / s.sw + 1 : 0;
  }
};

// A(m, k) = w[g*Fg + f, m, py + jy*sh, px + jx*sw] with m = channel in the group, k = (f, jy, jx)
template <typename T>
struct ConvWeightByChannel {
  const T* w;  // w[g*Fg, m0, 0, 0]
  int rows, K, taps_x, taps, py, px;
  ConvShape s;
  __device__ T operator()(int r, alx_index k) const {
    if (r >= rows || k >= K) return T(0);
    const int f = (int)k / taps, t = (int)k - f * taps, jy = t / taps_x, jx = t - jy * taps_x;
    return w[(alx_index)f * s.Cg() * s.KK() + (alx_index)r * s.KK() + (py + jy * s.sh) * s.KW + px + jx * s.sw];
  }
};

// B(k, n) = gy[img, g*Fg + f, oy0 - jy, ox0 - jx] (0 outside the output), k = (f, jy, jx);
// oy0 = (iy + ph - py) / sh for the column's input pixel iy (an exact division within a phase).
template <typename T>
struct ConvOutputGradColumn {
  const T* gy;  // gy[img, g*Fg, 0, 0]; null when the column is past the phase's pixels
  int oy0, ox0, K, taps_x, taps;
  ConvShape s;
  __device__ T operator()(alx_index k) const {
    if (gy == nullptr || k >= K) return T(0);
    const int f = (int)k / taps, t = (int)k - f * taps, jy = t / taps_x, jx = t - jy * taps_x;
    const int oy = oy0 - jy, ox = ox0 - jx;
    if (oy < 0 || ox < 0 || oy >= s.OH || ox >= s.OW) return T(0);
    return gy[((alx_index)f * s.OH + oy) * s.OW + ox];
  }
};

template <typename T, int BM, int BN>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T)
conv2d_backward_input(T* __restrict__ gx, const T* __restrict__ gy, const T* __restrict__ w, int batch, int C, int H,
                      int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Tile::BK][Tile::BN + Tile::PAD];
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int phases = sh * sw, g = blockIdx.z / phases;
  const ConvPhase phase = ConvPhase(s, blockIdx.z - g * phases);
  const int Cg = s.Cg(), Fg = s.Fg(), taps = phase.taps_y * phase.taps_x, K = Fg * taps;
  const alx_index pixels = (alx_index)phase.count_y * phase.count_x, N = batch * pixels;
  const int m0 = blockIdx.y * BM;
  const alx_index n0 = (alx_index)blockIdx.x * BN;
  if (n0 >= N) return;  // the grid covers the largest phase; the whole block leaves together

  StagePair<Tile, T, StageLoadAlongK<Tile, BM, T, ConvWeightByChannel<T>, int>,
            StageLoadAcrossK<Tile, BN, T, ConvOutputGradColumn<T>, int>> stager;
  stager.a.k0 = stager.b.k0 = 0;
  ConvOutputGradColumn<T>& load_b = stager.b.load;
  stager.a.load = {w + (alx_index)g * Fg * Cg * s.KK() + (alx_index)m0 * s.KK(), Cg - m0, K,
                                   phase.taps_x, taps, phase.py, phase.px, s};
  load_b = {nullptr, 0, 0, K, phase.taps_x, taps, s};
  {
    const alx_index n = n0 + threadIdx.x % BN;
    if (n < N) {
      const alx_index img = n / pixels;
      const int q = (int)(n - img * pixels), jy = q / phase.count_x, jx = q - jy * phase.count_x;
      load_b.gy = gy + (img * F + (alx_index)g * Fg) * OH * OW;
      load_b.oy0 = (phase.first_y + ph - phase.py) / sh + jy;
      load_b.ox0 = (phase.first_x + pw - phase.px) / sw + jx;
    }
  }
  T acc[Tile::TM][Tile::TN] = {};
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, K, acc);

  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int j = 0; j < Tile::TN; ++j) {
    const alx_index n = n0 + col + j;
    if (n >= N) continue;
    const alx_index img = n / pixels;
    const int q = (int)(n - img * pixels), jy = q / phase.count_x, jx = q - jy * phase.count_x;
    const alx_index pixel = (alx_index)(phase.first_y + jy * sh) * W + phase.first_x + jx * sw;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
      const int m = m0 + row + i;
      if (m < Cg) gx[(img * C + (alx_index)g * Cg + m) * H * W + pixel] = acc[i][j];
    }
  }
}

// ---- backward to the weights --------------------------------------------------------------------
// A(m, k) = gy[img, g*Fg + m, oy, ox] with k = (img, oy, ox)
template <typename T>
struct ConvOutputGradRows {
  const T* gy;  // gy[0, g*Fg + m0, 0, 0]
  int rows, F;
  alx_index plane, K;
  __device__ T operator()(int r, alx_index k) const {
    if (r >= rows || k >= K) return T(0);
    const alx_index img = k / plane, q = k - img * plane;
    return gy[(img * F + r) * plane + q];
  }
};

// B(k, n) = x[img, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx], k = (img, oy, ox), n = (c, fy, fx) fixed per thread
template <typename T>
struct ConvInputByWeight {
  const T* x;  // x[0, g*Cg + c, 0, 0]; null when the column is past N
  int fy, fx;
  alx_index K;
  ConvShape s;
  __device__ T operator()(alx_index k) const {
    if (x == nullptr || k >= K) return T(0);
    const alx_index plane = (alx_index)s.OH * s.OW, img = k / plane;
    const int q = (int)(k - img * plane), oy = q / s.OW, ox = q - oy * s.OW;
    const int iy = oy * s.sh - s.ph + fy, ix = ox * s.sw - s.pw + fx;
    if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return T(0);
    return x[(img * s.C * s.H + iy) * (alx_index)s.W + ix];
  }
};

// out (splits, F, Cg*KH*KW): the partial sum of split z % splits over K = batch*OH*OW; with one
// split `out` is the weight gradient itself.
template <typename T, int BM, int BN>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T)
conv2d_backward_weight(T* __restrict__ out, const T* __restrict__ gy, const T* __restrict__ x, int batch, int C, int H,
                       int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups,
                       int splits, long long k_per_split) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Tile::BK][Tile::BN + Tile::PAD];
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z / splits, split = blockIdx.z % splits, Cg = s.Cg(), Fg = s.Fg(), N = Cg * s.KK();
  const alx_index plane = (alx_index)OH * OW, K = batch * plane;
  const int m0 = blockIdx.y * BM;
  const int n0 = blockIdx.x * BN;

  StagePair<Tile, T, StageLoadAlongK<Tile, BM, T, ConvOutputGradRows<T>>,
            StageLoadAcrossK<Tile, BN, T, ConvInputByWeight<T>>> stager;
  ConvInputByWeight<T>& load_b = stager.b.load;
  stager.a.load = {gy + ((alx_index)g * Fg + m0) * plane, Fg - m0, F, plane, K};
  load_b = {nullptr, 0, 0, K, s};
  {
    const int n = n0 + threadIdx.x % BN;
    if (n < N) {
      const int c = n / s.KK(), r = n - c * s.KK();
      load_b.x = x + ((alx_index)g * Cg + c) * H * W;
      load_b.fy = r / KW;
      load_b.fx = r - load_b.fy * KW;
    }
  }
  const alx_index k_begin = split * (alx_index)k_per_split;
  const alx_index k_end = k_begin + k_per_split < K ? k_begin + k_per_split : K;
  T acc[Tile::TM][Tile::TN] = {};
  stager.a.k0 = stager.b.k0 = k_begin;
  gemm_tile_accumulate<Tile>(As, Bs, stager, k_begin, k_end, acc);

  T* o = out + (alx_index)split * F * N;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int m = m0 + row + i;
    if (m >= Fg) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int n = n0 + col + j;
      if (n < N) o[((alx_index)g * Fg + m) * N + n] = acc[i][j];
    }
  }
}

// gw[i] = sum over s of partial[s, i], in split order.
template <typename T>
__global__ void conv2d_sum_splits(T* __restrict__ gw, const T* __restrict__ partial, alx_index n, int splits) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    T acc = partial[i];
    for (int s = 1; s < splits; ++s) acc += partial[(alx_index)s * n + i];
    gw[i] = acc;
  }
}

ALX_INSTANTIATE(conv2d_forward<float, 64, 64>)
ALX_INSTANTIATE(conv2d_forward<float, 16, 256>)
ALX_INSTANTIATE(conv2d_forward<double, 64, 64>)
ALX_INSTANTIATE(conv2d_forward<double, 16, 256>)
ALX_INSTANTIATE(conv2d_backward_input<float, 64, 64>)
ALX_INSTANTIATE(conv2d_backward_input<float, 16, 256>)
ALX_INSTANTIATE(conv2d_backward_input<double, 64, 64>)
ALX_INSTANTIATE(conv2d_backward_input<double, 16, 256>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 64, 64>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 16, 256>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 64, 64>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 16, 256>)
ALX_INSTANTIATE(conv2d_sum_splits<float>)
ALX_INSTANTIATE(conv2d_sum_splits<double>)
