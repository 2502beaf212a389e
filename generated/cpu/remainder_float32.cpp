// exprgen kernel: out0 = remainder(x0, x1)
#include "prelude.h"
namespace eg {
static inline float remainder_f4f4_f4(float x, float y) { typedef float T; return (float)(remainder(x, y)); }
}  // namespace eg

// Elements [pos, end) of the flat index range, walked row by row over the coalesced loop shape, so the
// inner loop is a plain SIMD loop whatever the layouts.
static void run_range(int64_t pos, const int64_t end, const int32_t ndim, const int64_t* shape,
                      void* const* data, const int64_t* strides, const uint64_t* scalars) {
  const int64_t cols = shape[ndim - 1];
  while (pos < end) {
    int64_t row = pos / cols;
    const int64_t col = pos - row * cols;
    const int64_t len = cols - col < end - pos ? cols - col : end - pos;
    int64_t off0 = col * strides[0 * ndim + ndim - 1];
    int64_t off1 = col * strides[1 * ndim + ndim - 1];
    int64_t off2 = col * strides[2 * ndim + ndim - 1];
    for (int32_t d = ndim - 2; d >= 0; --d) {
      const int64_t i = row % shape[d];
      row /= shape[d];
      off0 += i * strides[0 * ndim + d];
      off1 += i * strides[1 * ndim + d];
      off2 += i * strides[2 * ndim + d];
    }
    const float* __restrict in0 = (const float*)data[0] + off0;
    const float* __restrict in1 = (const float*)data[1] + off1;
    float* __restrict out0 = (float*)data[2] + off2;
    int64_t start = 0;
    // Blocks of 64 elements, each first asking for its inputs' lines 4 KB ahead (see eg::prefetch), then
    // the run's last len % 64. (One loop over blocks of at most 64 ran slower: its bound is not constant.)
    for (; start + 64 <= len; start += 64) {
      for (int b = 0; b < 64 * (int)sizeof(*in0); b += 64) eg::prefetch(in0 + start, b);
      for (int b = 0; b < 64 * (int)sizeof(*in1); b += 64) eg::prefetch(in1 + start, b);
#pragma omp simd
      for (int64_t i = start; i < start + 64; ++i) {
        const float x0 = in0[i];
        const float x1 = in1[i];
        const float v0 = eg::remainder_f4f4_f4(x0, x1);
        out0[i] = v0;

      }
    }
#pragma omp simd
    for (int64_t i = start; i < len; ++i) {
        const float x0 = in0[i];
        const float x1 = in1[i];
        const float v0 = eg::remainder_f4f4_f4(x0, x1);
        out0[i] = v0;

    }
    pos += len;
  }
}

// One thread runs the whole range directly; a team takes chunks (16-element aligned, at most 64K elements,
// at least 8 per thread) as each thread comes free, so a core that a shared machine slows down gets less
// of the work: an equal split waits for the slowest thread. Each element is computed the same way by
// whichever thread.
extern "C" void exprgen_kernel(int64_t total, int32_t ndim, const int64_t* shape, void* const* data,
                            const int64_t* strides, const uint64_t* scalars, int32_t nthreads) {
  if (nthreads <= 1) {
    run_range(0, total, ndim, shape, data, strides, scalars);
    return;
  }
  const int64_t even = ((total + 8 * nthreads - 1) / (8 * nthreads) + 15) / 16 * 16;
  const int64_t chunk = even < 65536 ? even : 65536, chunks = (total + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t k = 0; k < chunks; ++k)
    run_range(k * chunk, k * chunk + chunk < total ? k * chunk + chunk : total, ndim, shape, data, strides, scalars);
}
