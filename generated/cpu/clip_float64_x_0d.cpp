// exprgen kernel: out0 = clip(x0, x1, x2)
#include "prelude.h"
namespace eg {
static inline double clip_f8f8f8_f8(double x, double lo, double hi) { typedef double T; return (double)(minimum(maximum(x, lo), hi)); }
}  // namespace eg

// Elements [pos, end) of the flat index range, walked row by row over the coalesced loop shape, so the
// inner loop is a plain SIMD loop whatever the layouts.
static void run_range(int64_t pos, const int64_t end, const int32_t ndim, const int64_t* shape,
                      void* const* data, const int64_t* strides, const uint64_t* scalars, const bool stream) {
  (void)stream;
  const int64_t cols = shape[ndim - 1];
  while (pos < end) {
    int64_t row = pos / cols;
    const int64_t col = pos - row * cols;
    const int64_t len = cols - col < end - pos ? cols - col : end - pos;
    int64_t off0 = col * strides[0 * ndim + ndim - 1];
    int64_t off1 = col * strides[1 * ndim + ndim - 1];
    int64_t off2 = col * strides[2 * ndim + ndim - 1];
    int64_t off3 = col * strides[3 * ndim + ndim - 1];
    for (int32_t d = ndim - 2; d >= 0; --d) {
      const int64_t i = row % shape[d];
      row /= shape[d];
      off0 += i * strides[0 * ndim + d];
      off1 += i * strides[1 * ndim + d];
      off2 += i * strides[2 * ndim + d];
      off3 += i * strides[3 * ndim + d];
    }
    const double* __restrict in0 = (const double*)data[0] + off0;
    const double* __restrict in1 = (const double*)data[1] + off1;
    const double* __restrict in2 = (const double*)data[2] + off2;
    double* __restrict out0 = (double*)data[3] + off3;
    // Blocks of 64 elements, each first asking for its inputs' lines 4 KB ahead (see eg::prefetch), then
    // the elements before the first block and after the last. (One loop over blocks of at most 64 ran
    // slower: its bound is not constant.)
    int64_t head = 0, start = 0;
    // A call that streams (see eg::STREAM_BYTES) starts its blocks at out0's first 64-byte line
    // boundary, computes each into line-aligned buffers and streams them out (an output on another
    // alignment is copied).
    const int64_t line = stream ? eg::elements_to_line(out0, sizeof(*out0)) : -1;
    if (line >= 0 && line + 64 <= len) {
      head = start = line;
      for (; start + 64 <= len; start += 64) {
      for (int b = 0; b < 64 * (int)sizeof(*in1); b += 64) eg::prefetch(in1 + start, b);
      for (int b = 0; b < 64 * (int)sizeof(*in2); b += 64) eg::prefetch(in2 + start, b);

        double out0_block[64] __attribute__((aligned(64)));
#pragma omp simd
        for (int64_t i = start; i < start + 64; ++i) {
        const double x0 = in0[0];
        const double x1 = in1[i];
        const double x2 = in2[i];
        const double v0 = eg::clip_f8f8f8_f8(x0, x1, x2);
        out0_block[i - start] = v0;

        }
        eg::stream_block(out0 + start, out0_block, sizeof(out0_block));
      }
    }
    for (; start + 64 <= len; start += 64) {
      for (int b = 0; b < 64 * (int)sizeof(*in1); b += 64) eg::prefetch(in1 + start, b);
      for (int b = 0; b < 64 * (int)sizeof(*in2); b += 64) eg::prefetch(in2 + start, b);

#pragma omp simd
      for (int64_t i = start; i < start + 64; ++i) {
        const double x0 = in0[0];
        const double x1 = in1[i];
        const double x2 = in2[i];
        const double v0 = eg::clip_f8f8f8_f8(x0, x1, x2);
        out0[i] = v0;

      }
    }
    // [0, head) and [start, len) in one loop, so that the body is compiled once for both
    for (int edge = 0; edge < 2; ++edge) {
      const int64_t first = edge ? start : 0, last = edge ? len : head;
#pragma omp simd
      for (int64_t i = first; i < last; ++i) {
        const double x0 = in0[0];
        const double x1 = in1[i];
        const double x2 = in2[i];
        const double v0 = eg::clip_f8f8f8_f8(x0, x1, x2);
        out0[i] = v0;

      }
    }
    pos += len;
  }
  if (stream) eg::stream_fence();
}

// One thread runs the whole range directly; a team takes chunks (16-element aligned, at most 64K elements,
// at least 8 per thread) as each thread comes free, so a core that a shared machine slows down gets less
// of the work: an equal split waits for the slowest thread. Each element is computed the same way by
// whichever thread.
extern "C" void exprgen_kernel(int64_t total, int32_t ndim, const int64_t* shape, void* const* data,
                            const int64_t* strides, const uint64_t* scalars, int32_t nthreads) {
  const bool stream = total * (int64_t)(sizeof(double)) >= eg::STREAM_BYTES;
  if (nthreads <= 1) {
    run_range(0, total, ndim, shape, data, strides, scalars, stream);
    return;
  }
  const int64_t even = ((total + 8 * nthreads - 1) / (8 * nthreads) + 15) / 16 * 16;
  const int64_t chunk = even < 65536 ? even : 65536, chunks = (total + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t k = 0; k < chunks; ++k)
    run_range(k * chunk, k * chunk + chunk < total ? k * chunk + chunk : total, ndim, shape, data, strides, scalars,
              stream);
}
