// CUDA on the host, for tests (EXPRGEN_CUDA_HOST=1): a kernel's own CUDA source, the text NVRTC
// compiles, is compiled by the host C++ compiler after this header, and its grid is run on the CPU.
//
// Every CUDA thread of a block is a fiber (ucontext) with its own stack, run in turn on one host thread
// until it finishes or reaches a barrier: __syncthreads() waits for every thread of the block, a warp
// shuffle for the 32 lanes of its warp, which then read one another's offered values. Blocks run one
// after another, so __shared__ is a function-local static, shared by the block's fibers. The logic is
// CUDA's (index arithmetic, grid-stride loops, shared-memory and shuffle reductions, argument packing);
// what it cannot show is timing, occupancy, and races the sequential order hides. A barrier that not
// every thread reaches (divergence, or a thread that already returned) is CUDA's undefined behaviour:
// here the launch stops and says which.
#pragma once
#define EG_CUDA_HOST 1
#include <math.h>
#include <string.h>
#include <ucontext.h>
#include <stdlib.h>
#include <mutex>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Everything here has internal linkage: gcc unifies an inline variable or a template's static across all
// the libraries a process loads (STB_GNU_UNIQUE, even RTLD_LOCAL ones), and every kernel names its
// parameter block Params, so two kernels would share launch<Params>'s copy of it, sized for one of them.
namespace eg_host {
namespace {
enum State { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
// What a launch says back (exprgen/backends/cuda_host.py words it).
enum Status { OK = 0, BAD_PARAMS = 1, SHUFFLE_WITH_EXITED_LANE = 2, DIVERGED = 3, SYNC_AFTER_EXIT = 4,
              NO_MEMORY = 5 };
constexpr int WARP = 32;
constexpr size_t STACK_BYTES = 256 << 10;   // a kernel's frames are small: locals, no recursion

struct Fiber {
  ucontext_t context;
  dim3 thread;
  State state;
  unsigned offered, received;   // a shuffle's word: this lane's, and the one it reads
  int source;                   // the lane it reads (-1: its own value, as past the warp's end)
  char* stack;
};

Fiber* current;
dim3 block_index, block_dim, grid_dim;
ucontext_t scheduler;
Fiber* fibers;
unsigned n_fibers;
void (*body)();          // the kernel over its parameters, as the launch bound them

inline void wait(State at) {
  Fiber* self = current;
  self->state = at;
  swapcontext(&self->context, &scheduler);
}

inline void start() {
  body();
  current->state = DONE;   // then uc_link resumes the scheduler
}

// Lanes of the warp at ``first``, all at the shuffle: each reads its source's offered word.
inline Status exchange(unsigned first, unsigned lanes) {
  for (unsigned k = first; k < first + lanes; ++k) {
    Fiber& f = fibers[k];
    if (f.source < 0) {
      f.received = f.offered;
    } else {
      Fiber& from = fibers[first + f.source];
      if (from.state != AT_WARP_BARRIER) return SHUFFLE_WITH_EXITED_LANE;
      f.received = from.offered;
    }
  }
  for (unsigned k = first; k < first + lanes; ++k) fibers[k].state = READY;
  return OK;
}

// Run the block until every fiber is done; a barrier opens once all whom it waits for are at it.
inline Status run_block() {
  for (;;) {
    for (unsigned k = 0; k < n_fibers; ++k) {
      if (fibers[k].state != READY) continue;
      current = &fibers[k];
      swapcontext(&scheduler, &fibers[k].context);
    }
    unsigned done = 0, at_block = 0;
    bool opened = false;
    for (unsigned first = 0; first < n_fibers; first += WARP) {
      const unsigned lanes = n_fibers - first < WARP ? n_fibers - first : WARP;
      unsigned at_warp = 0, exited = 0;
      for (unsigned k = first; k < first + lanes; ++k) {
        at_warp += fibers[k].state == AT_WARP_BARRIER;
        exited += fibers[k].state == DONE;
        at_block += fibers[k].state == AT_BLOCK_BARRIER;
      }
      done += exited;
      if (at_warp == 0) continue;
      if (at_warp + exited == lanes && exited) return SHUFFLE_WITH_EXITED_LANE;
      if (at_warp == lanes) {
        const Status status = exchange(first, lanes);
        if (status != OK) return status;
        opened = true;
      }
    }
    if (opened) continue;
    if (done == n_fibers) return OK;
    if (at_block + done == n_fibers) {
      if (done) return SYNC_AFTER_EXIT;
      for (unsigned k = 0; k < n_fibers; ++k) fibers[k].state = READY;
      continue;
    }
    return DIVERGED;   // some wait at __syncthreads, others of a warp at a shuffle: none can go on
  }
}

// The fibers' stacks, made for one grid and let go after it: a process loads hundreds of kernel libraries,
// and each keeping its own 256 stacks would hold hundreds of MB.
struct Stacks {
  Fiber* fibers = nullptr;
  unsigned made = 0;
  ~Stacks() {
    for (unsigned k = 0; k < made; ++k) free(fibers[k].stack);
    free(fibers);
  }
};

inline Status run_grid(unsigned blocks, unsigned threads) {
  Stacks stacks;
  stacks.fibers = (Fiber*)calloc(threads, sizeof(Fiber));
  if (!stacks.fibers) return NO_MEMORY;
  for (; stacks.made < threads; ++stacks.made) {
    stacks.fibers[stacks.made].stack = (char*)malloc(STACK_BYTES);   // untouched pages cost nothing
    if (!stacks.fibers[stacks.made].stack) return NO_MEMORY;
  }
  fibers = stacks.fibers;
  n_fibers = threads;
  grid_dim.x = blocks;
  block_dim.x = threads;
  for (unsigned b = 0; b < blocks; ++b) {
    block_index.x = b;
    for (unsigned k = 0; k < threads; ++k) {
      Fiber& f = fibers[k];
      f.thread.x = k;
      f.state = READY;
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack;
      f.context.uc_stack.ss_size = STACK_BYTES;
      f.context.uc_link = &scheduler;
      makecontext(&f.context, start, 0);
    }
    const Status status = run_block();
    if (status != OK) return status;
  }
  return OK;
}

// The kernel ``kernel`` over ``size`` bytes of parameters, as cuLaunchKernel would pass them. One grid at a
// time per library (launches come from any Python thread: cffi lets go of the GIL): the parameters, the
// scheduler's state and __shared__ are the library's statics.
template <class P> int launch(void (*kernel)(P), unsigned blocks, unsigned threads, const void* params, long size) {
  if (size != (long)sizeof(P)) return BAD_PARAMS;
  static std::mutex lock;
  std::lock_guard<std::mutex> held(lock);
  static P bound;
  static void (*entry)(P);
  memcpy((void*)&bound, params, sizeof(P));
  entry = kernel;
  body = [] { entry(bound); };
  return run_grid(blocks, threads);
}
}  // namespace
}  // namespace eg_host

#define threadIdx (eg_host::current->thread)
#define blockIdx (eg_host::block_index)
#define blockDim (eg_host::block_dim)
#define gridDim (eg_host::grid_dim)

static inline void __syncthreads() { eg_host::wait(eg_host::AT_BLOCK_BARRIER); }

static inline int __shfl_down_sync(unsigned mask, int value, unsigned delta, int width = eg_host::WARP) {
  (void)mask;   // the templates shuffle with every lane: exited lanes are caught as they are read
  eg_host::Fiber* self = eg_host::current;
  const int lane = (int)(self->thread.x % eg_host::WARP);
  const int segment = lane / width * width;
  self->offered = (unsigned)value;
  self->source = lane - segment + (int)delta < width ? lane + (int)delta : -1;
  eg_host::wait(eg_host::AT_WARP_BARRIER);
  return (int)self->received;
}

static inline float __int_as_float(int x) { float f; memcpy(&f, &x, sizeof f); return f; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, sizeof i); return i; }
