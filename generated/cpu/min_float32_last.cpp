// exprgen kernel: out0 = min(x0)
#include "prelude.h"
namespace eg {
static inline float init_w0() { float acc{}; return (float)(highest(acc)); }
static inline float combine_w0(float acc, float x) { return (float)(minimum(acc, x)); }
}  // namespace eg

// A rows kernel reduces the inner (reduced) dims of each row of the outer (kept) dims. The shape argument
// is [n_outer_dims, n_inner_dims, outer dims..., inner dims...]; each array's strides are its outer then
// inner strides, in elements (0 where it is broadcast). total is the number of rows.
namespace {
struct Ctx {
  const int64_t* shape;
  void* const* data;
  const int64_t* strides;
  const uint64_t* scalars;
  int32_t nout, nin, nd;
  int64_t inner_total;
  int64_t parts, part;   // each row is reduced in parts of `part` elements (see the entry point)
};

struct Row {
  int64_t off[2];
  float w0;
};

// A pass's loop over a run takes L elements at a time (L independent partial accumulators: two vectors of
// float, as one alone is a dependency chain), then the run's last len % L elements one by one.
constexpr int L = 32;

struct Acc0 {
  float w0;
};

inline void row_offsets(const Ctx& c, int64_t row, Row& r) {
  r.off[0] = 0;
  r.off[1] = 0;
  for (int32_t d = c.nout - 1; d >= 0; --d) {
    const int64_t i = row % c.shape[2 + d];
    row /= c.shape[2 + d];
    r.off[0] += i * c.strides[0 * c.nd + d];
    r.off[1] += i * c.strides[1 * c.nd + d];
  }
}

inline void phase0(const Ctx& c, const Row& r, int64_t lo, int64_t hi, Acc0& acc) {
  (void)r;

  float lane_w0[L];
  for (int k = 0; k < L; ++k) lane_w0[k] = eg::init_w0();
  for (int64_t pos = lo; pos < hi;) {
    const int64_t cols = c.shape[2 + c.nd - 1];
    int64_t q = pos / cols;
    const int64_t col = pos - q * cols;
    const int64_t len = cols - col < hi - pos ? cols - col : hi - pos;
    int64_t off[2];
    for (int k = 0; k < 2; ++k) off[k] = r.off[k] + col * c.strides[k * c.nd + c.nd - 1];
    for (int32_t d = c.nd - 2; d >= c.nout; --d) {
      const int64_t i = q % c.shape[2 + d];
      q /= c.shape[2 + d];
      for (int k = 0; k < 2; ++k) off[k] += i * c.strides[k * c.nd + d];
    }
    const float* __restrict in0 = (const float*)c.data[0] + off[0];
    const int64_t in0_step = c.strides[0 * c.nd + c.nd - 1];
    (void)in0; (void)in0_step;
    float* __restrict out0 = (float*)c.data[1] + off[1];
    const int64_t out0_step = c.strides[1 * c.nd + c.nd - 1];
    (void)out0; (void)out0_step;

    int64_t i = 0;
    for (; i + L <= len; i += L) {
      for (int b = 0; b < L * (int)sizeof(*in0); b += 64) eg::prefetch(in0 + i, b);
#pragma omp simd
      for (int k = 0; k < L; ++k) {
        const int64_t e = i + k;
        const float x0 = in0[e];

        lane_w0[k] = eg::combine_w0(lane_w0[k], (float)x0);
      }
    }
    // The run's last len % L elements, element i + k into lane k: a loop gcc vectorises (one lane took
    // them one by one before, with scalar math; softmax over rows of 1000: 4.7 -> 4.6 ms median of four
    // alternating runs, within this VM's noise). Which lane takes an element is fixed by the row's length,
    // so the bits still do not depend on the thread count.
    const int64_t rest = len - i;
#pragma omp simd
    for (int k = 0; k < rest; ++k) {
      const int64_t e = i + k;
        const float x0 = in0[e];

      lane_w0[k] = eg::combine_w0(lane_w0[k], (float)x0);
    }
    pos += len;
  }
  for (int k = 0; k < L; ++k) {
    acc.w0 = eg::combine_w0(acc.w0, lane_w0[k]);
  }
}

// The partial accumulator of a later part folded into that of the parts before it.
inline void merge0(Acc0& acc, const Acc0& partial) {
  acc.w0 = eg::combine_w0(acc.w0, partial.w0);
}

inline void finish0(const Ctx& c, Row& r, const Acc0& acc) {

  r.w0 = (float)acc.w0;
  int64_t off[2];
  for (int k = 0; k < 2; ++k) off[k] = r.off[k];
    const float* __restrict in0 = (const float*)c.data[0] + off[0];
    const int64_t in0_step = c.strides[0 * c.nd + c.nd - 1];
    (void)in0; (void)in0_step;
    float* __restrict out0 = (float*)c.data[1] + off[1];
    const int64_t out0_step = c.strides[1 * c.nd + c.nd - 1];
    (void)out0; (void)out0_step;

  const int64_t e = 0;
  (void)e;
}

inline void map_phase(const Ctx& c, const Row& r, int64_t lo, int64_t hi) {
  (void)r;

  for (int64_t pos = lo; pos < hi;) {
    const int64_t cols = c.shape[2 + c.nd - 1];
    int64_t q = pos / cols;
    const int64_t col = pos - q * cols;
    const int64_t len = cols - col < hi - pos ? cols - col : hi - pos;
    int64_t off[2];
    for (int k = 0; k < 2; ++k) off[k] = r.off[k] + col * c.strides[k * c.nd + c.nd - 1];
    for (int32_t d = c.nd - 2; d >= c.nout; --d) {
      const int64_t i = q % c.shape[2 + d];
      q /= c.shape[2 + d];
      for (int k = 0; k < 2; ++k) off[k] += i * c.strides[k * c.nd + d];
    }
    const float* __restrict in0 = (const float*)c.data[0] + off[0];
    const int64_t in0_step = c.strides[0 * c.nd + c.nd - 1];
    (void)in0; (void)in0_step;
    float* __restrict out0 = (float*)c.data[1] + off[1];
    const int64_t out0_step = c.strides[1 * c.nd + c.nd - 1];
    (void)out0; (void)out0_step;

    int64_t e0 = 0;
#pragma omp simd
    for (int64_t e = e0; e < len; ++e) {

    }
    pos += len;
  }
}

inline void store_row(const Ctx& c, const Row& r) {
  int64_t off[2];
  for (int k = 0; k < 2; ++k) off[k] = r.off[k];
    const float* __restrict in0 = (const float*)c.data[0] + off[0];
    const int64_t in0_step = c.strides[0 * c.nd + c.nd - 1];
    (void)in0; (void)in0_step;
    float* __restrict out0 = (float*)c.data[1] + off[1];
    const int64_t out0_step = c.strides[1 * c.nd + c.nd - 1];
    (void)out0; (void)out0_step;

  out0[0] = r.w0;
}

// Elements [lo, hi) of part j of a row.
inline int64_t part_begin(const Ctx& c, int64_t j) { return j * c.part < c.inner_total ? j * c.part : c.inner_total; }
inline int64_t part_end(const Ctx& c, int64_t j) {
  return part_begin(c, j) + c.part < c.inner_total ? part_begin(c, j) + c.part : c.inner_total;
}

inline void whole_row(const Ctx& c, int64_t row) {
  Row r;
  row_offsets(c, row, r);
  {
    // Part by part, merged in part order as the threads' partials are. A short row is one part, passed
    // as [0, inner_total) itself: going through part_begin/part_end there made softmax (10000, 1000)
    // ~15% slower (A/B, 6.7-6.9 vs 7.8-8.0 ms), as the compiler then knows less about the bounds.
    Acc0 acc;
    for (int64_t j = 0; j < c.parts; ++j) {
      Acc0 partial;
      partial.w0 = eg::init_w0();
      if (c.parts == 1) {
        phase0(c, r, 0, c.inner_total, partial);
      } else {
        phase0(c, r, part_begin(c, j), part_end(c, j), partial);
      }
      if (j == 0) {
        acc = partial;
      } else {
        merge0(acc, partial);
      }
    }
    finish0(c, r, acc);
  }
  store_row(c, r);
}
}  // namespace

// Many rows: threads take whole rows. Few long rows: each pass over a row is split in parts (below).
extern "C" void exprgen_kernel(int64_t total, int32_t ndim, const int64_t* shape, void* const* data,
                            const int64_t* strides, const uint64_t* scalars, int32_t nthreads) {
  (void)ndim;
  Ctx c{shape, data, strides, scalars, (int32_t)shape[0], (int32_t)shape[1], (int32_t)(shape[0] + shape[1]), 1, 1, 1};
  for (int32_t d = 0; d < c.nin; ++d) c.inner_total *= shape[2 + c.nout + d];
  // Parts of about 8K elements (at most 256, a multiple of L each), fixed by the row's length alone: a row
  // is folded part by part and the partial accumulators merged in part order, by one thread (whole_row) or
  // by several (below), so a result has the same bits for any thread count and any timing.
  c.parts = c.inner_total / 8192 > 256 ? 256 : c.inner_total / 8192 > 1 ? c.inner_total / 8192 : 1;
  c.part = ((c.inner_total + c.parts - 1) / c.parts + L - 1) / L * L;
  if (nthreads <= 1 || total >= 2 * nthreads || c.inner_total < 4096) {
    // Whole rows, a batch of about 32K elements at a time to whichever thread comes free (a core slowed
    // by a shared machine takes fewer); a row's result does not depend on the thread computing it.
    const int64_t batch = c.inner_total < 32768 ? 32768 / (c.inner_total > 0 ? c.inner_total : 1) : 1;
#pragma omp parallel for schedule(dynamic, batch) num_threads(nthreads) if (nthreads > 1 && total > 1)
    for (int64_t row = 0; row < total; ++row) whole_row(c, row);
    return;
  }
  // Few long rows: threads take a row's parts as they come free.
  for (int64_t row = 0; row < total; ++row) {
    Row r;
    row_offsets(c, row, r);
    {
      Acc0 partial[256];
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
      for (int64_t j = 0; j < c.parts; ++j) {
        partial[j].w0 = eg::init_w0();
        phase0(c, r, part_begin(c, j), part_end(c, j), partial[j]);
      }
      Acc0 acc = partial[0];
      for (int64_t j = 1; j < c.parts; ++j) merge0(acc, partial[j]);
      finish0(c, r, acc);
    }
    store_row(c, r);
  }
}
