// conv2d.cu: 2-D convolution (cross-correlation, as torch.nn.functional.conv2d) with zero padding,
// stride and groups, forward and both backwards, as implicit GEMMs on the shared register-blocked
// tile (kernels/gemm_tile.cuh). No im2col buffer: the stagers read the images in place.
//
//   forward          y[n, f, oy, ox] = b[f] + sum_{c, fy, fx} w[f, c, fy, fx] * x[n, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx]
//   backward input   gx[n, c, iy, ix] = sum_{f, fy, fx} w[f, c', fy, fx] * gy[n, f, oy, ox]  over oy*sh - ph + fy = iy, ...
//   backward weight  gw[f, c, fy, fx] = sum_{n, oy, ox} gy[n, f, oy, ox] * x[n, g*Cg + c, oy*sh - ph + fy, ...]
// (f in group g = f / Fg reads channels g*Cg .. g*Cg + Cg - 1; pixels outside the input read 0, which
// also gives cuda-convnet's ceil output rule: its extra right/bottom outputs read zeros.)
//
// Layout: NCHW x, y, gx, gy; weights (F, Cg, KH, KW), all C-contiguous. Cg = C / groups, Fg = F / groups.
// Tiling: GemmTile<BM, BN> (256 threads, 4 x 4 outputs each in v1's 64 x 64 and 16 x 256 tiles, 8 x 8
// in v2's 128 x 128, 8 x 4 in its 128 x 64 and 64 x 128; 16-deep K slices), grid
// (ceil(N / BN), ceil(M / BM), groups [x splits]); V: the version of gemm_tile.cuh's progression
// (3: double-buffered, the last here: version 4's 16-byte loads are for plain matrices, see there):
//   forward          M = Fg (filters),   N = batch*OH*OW, K = Cg*KH*KW; A = w rows (K-contiguous), B = x gathered
//   backward input   one product per stride phase (py, px) = ((iy + ph) % sh, (ix + pw) % sw), whose
//                    pixels only meet taps fy = py + jy*sh, fx = px + jx*sw (no multiply by a
//                    structural zero): M = Cg (channels), N = batch * the phase's pixels,
//                    K = Fg*taps_y*taps_x; A = w gathered, B = gy gathered; grid z = groups * sh * sw
//   backward weight  M = Fg,  N = Cg*KH*KW,  K = batch*OH*OW, split into `splits` ranges of whole slices
//                    (grid z = groups * splits) written to a workspace and summed in split order by
//                    kernels/split_sum.cu, so the result does not depend on how blocks are scheduled;
//                    A = gy (k = (img, oy, ox) offsets from the table), B = x gathered.
// Gathered operands: K is walked in chunks of 256 k; before each chunk the block writes a table in
// shared memory (ConvTap, one k per thread, the only integer divisions of the K loop): the k's
// element offset in the gathered B operand and its pixel displacement (dy, dx), and the k's offset
// in a gathered A operand. A B column (one per thread, fixed) is a base element and pixel (y0, x0):
// staging element (k, column) costs one table read, two unsigned bounds checks of (y0 + dy, x0 + dx)
// and one load; an A element (a fixed row per thread) one table read and one load.
// Launch geometry (tile shape, splits): alexnet_raw/ops/conv2d.py. Bias gradient: kernels/bias_grad.cu.
// Reference: alexnet_raw/checks/torch_reference.py; tests: tests/kernels/test_conv2d.py.
#include "common.cuh"
#include "gemm_tile.cuh"
#include "conv_taps.cuh"

// ConvShape, the tap table and its stagers (StageTapsAcrossK, StageTapsRows, ConvStager), ConvOutputSize and
// ConvForwardTaps: kernels/conv_taps.cuh (shared with kernels/local.cu).

// ---- forward ------------------------------------------------------------------------------------
// A(m, k) = w[g*Fg + m, k] with k = (c, fy, fx): a K-contiguous matrix (StageRowsAlongK)
// B(k, n) = x[img, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx], n = (img, oy, ox):
//   column base x[img, g*Cg, oy*sh - ph, ox*sw - pw], tap off = (c*H + fy)*W + fx, (dy, dx) = (fy, fx)
//   (ConvForwardTaps, kernels/conv_taps.cuh)
template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
conv2d_forward(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, int has_bias,
               int batch, int C, int H, int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw,
               int groups) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ ConvOutputSize out_size;
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z, Fg = s.Fg(), K = s.Cg() * s.KK();
  const alx_index plane = (alx_index)OH * OW, N = batch * plane;
  const int m0 = blockIdx.y * BM;
  const alx_index n0 = (alx_index)blockIdx.x * BN;
  if (threadIdx.x == 0) out_size = {plane, N, Fg, g * Fg};

  ConvStager<Tile, T, StageRowsAlongK<Tile, BM, T>, ConvForwardTaps<T>, false> stager;
  stager.b.taps = table;
  __shared__ ConvForwardTaps<T> fill;
  if (threadIdx.x == 0) fill = {KW, s.KK(), H, W};
  stager.fill = &fill;
  stager.a.init(w + ((alx_index)g * Fg + m0) * K, K, Fg - m0, 0);
  stager.b.h = H;
  stager.b.w = W;
  {
    const alx_index n = n0 + threadIdx.x % BN < N ? n0 + threadIdx.x % BN : N - 1;
    const alx_index img = n / plane;
    const int q = (int)(n - img * plane), oy = q / OW, ox = q - oy * OW;
    stager.b.y0 = oy * sh - ph;
    stager.b.x0 = ox * sw - pw;
    stager.b.col = (const char*)(x + (img * C + (alx_index)g * s.Cg()) * H * W + (alx_index)stager.b.y0 * W + stager.b.x0);
  }
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill and out_size written (the K loop may have no barrier: K = 0)
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, K, acc);

  const ConvOutputSize o = out_size;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int j = 0; j < Tile::TN; ++j) {
    const alx_index n = n0 + col + j;
    if (n >= o.N) continue;
    const alx_index img = n / o.plane, q = n - img * o.plane;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
      const int m = m0 + row + i;
      if (m >= o.rows) continue;
      const int f = o.channel0 + m;
      y[(img * F + f) * o.plane + q] = acc[i][j] + (has_bias ? bias[f] : T(0));
    }
  }
}

// ---- backward to the input ----------------------------------------------------------------------
// Split by stride phase so that no multiply-add meets a structural zero: input pixels with
// (iy + ph) % sh == py receive gradient only from taps fy = py, py + sh, ... (and likewise in x), so
// each phase (py, px) is its own product with K = Fg * taps_y * taps_x. Grid z = groups * sh * sw.
struct ConvPhase {
  int py, px, taps_y, taps_x, first_y, first_x, count_y, count_x;  // first/count: the phase's input rows/columns
  __device__ void init(const ConvShape& s, int phase) {
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

// k = (f, jy, jx):
// A(m, k) = w[g*Fg + f, m, py + jy*sh, px + jx*sw]: row m at w[g*Fg, m0 + m] + a_off, a_off = f*Cg*KH*KW + (py + jy*sh)*KW + px + jx*sw
// B(k, n) = gy[img, g*Fg + f, oy0 - jy, ox0 - jx] (0 outside the output), oy0 = (iy + ph - py) / sh for
//   the column's input pixel iy (an exact division within a phase): column base gy[img, g*Fg, oy0, ox0],
//   tap off = (f*OH - jy)*OW - jx, (dy, dx) = (-jy, -jx)
template <typename T>
struct ConvBackwardInputTaps {
  int K;  // the product's K, here for gemm_tile_accumulate to read from shared memory
  int taps, taps_x, py, px, sh, sw, KW, OH, OW;
  alx_index filter;  // Cg*KH*KW
  __device__ ConvTap operator()(alx_index k, alx_index& a_off) const {
    const int kk = (int)k, f = kk / taps, r = kk - f * taps, jy = r / taps_x, jx = r - jy * taps_x;
    a_off = (f * filter + (py + jy * sh) * KW + px + jx * sw) * (alx_index)sizeof(T);
    return conv_tap((((alx_index)f * OH - jy) * OW - jx) * (alx_index)sizeof(T), -jy, -jx);
  }
};

template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
conv2d_backward_input(T* __restrict__ gx, const T* __restrict__ gy, const T* __restrict__ w, int batch, int C, int H,
                      int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ __align__(16) alx_index a_table[CONV_CHUNK];
  __shared__ ConvOutputSize out_size;
  __shared__ ConvPhase out_phase;
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int phases = sh * sw, g = blockIdx.z / phases;
  ConvPhase phase;
  phase.init(s, blockIdx.z - g * phases);
  const int Cg = s.Cg(), Fg = s.Fg(), taps = phase.taps_y * phase.taps_x, K = Fg * taps;
  const alx_index pixels = (alx_index)phase.count_y * phase.count_x, N = batch * pixels;
  const int m0 = blockIdx.y * BM;
  const alx_index n0 = (alx_index)blockIdx.x * BN;
  if (n0 >= N) return;  // the grid covers the largest phase; the whole block leaves together
  if (threadIdx.x == 0) {
    out_size = {pixels, N, Cg, g * Cg};
    out_phase = phase;
  }

  ConvStager<Tile, T, StageTapsRows<Tile, BM, T>, ConvBackwardInputTaps<T>, true> stager;
  stager.b.taps = table;
  stager.a.offs = a_table;
  __shared__ ConvBackwardInputTaps<T> fill;
  if (threadIdx.x == 0) fill = {K, taps, phase.taps_x, phase.py, phase.px, sh, sw, KW, OH, OW, (alx_index)Cg * s.KK()};
  stager.fill = &fill;
  stager.a.init(w + (alx_index)g * Fg * Cg * s.KK() + (alx_index)m0 * s.KK(), s.KK(), Cg - m0);
  stager.b.h = OH;
  stager.b.w = OW;
  {
    const alx_index n = n0 + threadIdx.x % BN < N ? n0 + threadIdx.x % BN : N - 1;
    const alx_index img = n / pixels;
    const int q = (int)(n - img * pixels), jy = q / phase.count_x, jx = q - jy * phase.count_x;
    stager.b.y0 = (phase.first_y + ph - phase.py) / sh + jy;
    stager.b.x0 = (phase.first_x + pw - phase.px) / sw + jx;
    stager.b.col = (const char*)(gy + (img * F + (alx_index)g * Fg) * OH * OW + (alx_index)stager.b.y0 * OW + stager.b.x0);
  }
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill, out_size and out_phase written (the K loop may have no barrier: K = 0)
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, fill.K, acc);

  const ConvOutputSize o = out_size;
  const ConvPhase p = out_phase;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int j = 0; j < Tile::TN; ++j) {
    const alx_index n = n0 + col + j;
    if (n >= o.N) continue;
    const alx_index img = n / o.plane;
    const int q = (int)(n - img * o.plane), jy = q / p.count_x, jx = q - jy * p.count_x;
    const alx_index pixel = (alx_index)(p.first_y + jy * sh) * W + p.first_x + jx * sw;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
      const int m = m0 + row + i;
      if (m < o.rows) gx[(img * C + o.channel0 + m) * (alx_index)H * W + pixel] = acc[i][j];
    }
  }
}

// ---- backward to the weights --------------------------------------------------------------------
// k = (img, oy, ox):
// A(m, k) = gy[img, g*Fg + m, oy, ox]: row m at gy[0, g*Fg + m0 + m] + a_off, a_off = img*F*OH*OW + oy*OW + ox
// B(k, n) = x[img, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx], n = (c, fy, fx): column base
//   x[0, g*Cg + c, fy, fx], tap (dy, dx) = (oy*sh - ph, ox*sw - pw), off = img*C*H*W + dy*W + dx
template <typename T>
struct ConvBackwardWeightTaps {
  int OW, sh, sw, ph, pw, W;
  alx_index plane, image, gy_image;  // OH*OW, C*H*W, F*OH*OW
  __device__ ConvTap operator()(alx_index k, alx_index& a_off) const {
    const alx_index img = k / plane;
    const int q = (int)(k - img * plane), oy = q / OW, ox = q - oy * OW, dy = oy * sh - ph, dx = ox * sw - pw;
    a_off = (img * gy_image + q) * (alx_index)sizeof(T);
    return conv_tap((img * image + (alx_index)dy * W + dx) * (alx_index)sizeof(T), dy, dx);
  }
};

// out (splits, F, Cg*KH*KW): the partial sum of split z % splits over K = batch*OH*OW; with one
// split `out` is the weight gradient itself.
template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
conv2d_backward_weight(T* __restrict__ out, const T* __restrict__ gy, const T* __restrict__ x, int batch, int C, int H,
                       int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups,
                       int splits, long long k_per_split) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ __align__(16) alx_index a_table[CONV_CHUNK];
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z / splits, split = blockIdx.z % splits, Cg = s.Cg(), Fg = s.Fg(), N = Cg * s.KK();
  const alx_index plane = (alx_index)OH * OW, K = batch * plane;
  const int m0 = blockIdx.y * BM;
  const int n0 = blockIdx.x * BN;

  ConvStager<Tile, T, StageTapsRows<Tile, BM, T>, ConvBackwardWeightTaps<T>, true> stager;
  stager.b.taps = table;
  stager.a.offs = a_table;
  __shared__ ConvBackwardWeightTaps<T> fill;
  if (threadIdx.x == 0) fill = {OW, sh, sw, ph, pw, W, plane, (alx_index)C * H * W, F * plane};
  stager.fill = &fill;
  __shared__ ConvOutputSize out_size;
  if (threadIdx.x == 0) out_size = {(alx_index)split * F * N, N, Fg, g * Fg};
  stager.a.init(gy + ((alx_index)g * Fg + m0) * plane, plane, Fg - m0);
  stager.b.h = H;
  stager.b.w = W;
  {
    const int n = n0 + (int)threadIdx.x % BN < N ? n0 + (int)threadIdx.x % BN : N - 1;
    const int c = n / s.KK(), r = n - c * s.KK(), fy = r / KW, fx = r - fy * KW;
    stager.b.y0 = fy;
    stager.b.x0 = fx;
    stager.b.col = (const char*)(x + ((alx_index)g * Cg + c) * H * W + (alx_index)fy * W + fx);
  }
  const alx_index k_begin = split * (alx_index)k_per_split;
  const alx_index k_end = k_begin + k_per_split < K ? k_begin + k_per_split : K;
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill and out_size written
  gemm_tile_accumulate<Tile>(As, Bs, stager, k_begin, k_end, acc);

  const ConvOutputSize o = out_size;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int m = m0 + row + i;
    if (m >= o.rows) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int n = n0 + col + j;
      if (n < o.N) out[o.plane + (o.channel0 + m) * o.N + n] = acc[i][j];
    }
  }
}

ALX_INSTANTIATE(conv2d_forward<float, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_forward<float, 16, 256, 1>)
ALX_INSTANTIATE(conv2d_forward<double, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_forward<double, 16, 256, 1>)
ALX_INSTANTIATE(conv2d_backward_input<float, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_backward_input<float, 16, 256, 1>)
ALX_INSTANTIATE(conv2d_backward_input<double, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_backward_input<double, 16, 256, 1>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 16, 256, 1>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 64, 64, 1>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 16, 256, 1>)
// version 2: 8 x 8 / 8 x 4 outputs per thread (float)
ALX_INSTANTIATE(conv2d_forward<float, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_forward<float, 128, 64, 2>)
ALX_INSTANTIATE(conv2d_forward<float, 64, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_input<float, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_input<float, 128, 64, 2>)
ALX_INSTANTIATE(conv2d_backward_input<float, 64, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 128, 64, 2>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 64, 128, 2>)
// version 3: version 2 double-buffered
ALX_INSTANTIATE(conv2d_forward<float, 128, 128, 3>)
ALX_INSTANTIATE(conv2d_forward<float, 128, 64, 3>)
ALX_INSTANTIATE(conv2d_forward<float, 64, 128, 3>)
ALX_INSTANTIATE(conv2d_backward_input<float, 128, 128, 3>)
ALX_INSTANTIATE(conv2d_backward_input<float, 128, 64, 3>)
ALX_INSTANTIATE(conv2d_backward_input<float, 64, 128, 3>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 128, 128, 3>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 128, 64, 3>)
ALX_INSTANTIATE(conv2d_backward_weight<float, 64, 128, 3>)
// versions 2 and 3 in double, one shape each (kernels/gemm_tile.cuh: the tests' float64 checks)
ALX_INSTANTIATE(conv2d_forward<double, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_input<double, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 128, 128, 2>)
ALX_INSTANTIATE(conv2d_forward<double, 64, 64, 3>)
ALX_INSTANTIATE(conv2d_backward_input<double, 64, 64, 3>)
ALX_INSTANTIATE(conv2d_backward_weight<double, 64, 64, 3>)
