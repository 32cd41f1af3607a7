// A model of CUDA's execution on the host, for running the op's CUDA kernels (their own source,
// ops/csrc/cuda/ms_deform_attn_kernels.cuh) in the CPU tests. Included before that source.
//
// What it models, and how:
// - The grid: blocks run one after another, in index order or in a shuffled order; a grid can
//   be given fewer blocks than the work needs, so that grid-stride loops wrap.
// - Threads: each thread of a block is a fiber (ucontext) with its own stack. A thread runs
//   until it finishes or waits in a warp collective; the scheduler then runs the next one (in
//   index order, or shuffled). Any interleaving between collectives is a legal CUDA schedule,
//   since the kernels share no memory except through atomics.
// - Warp collectives: __shfl_xor_sync waits until every lane named in the mask has reached
//   the same collective, then reads the partner lane's value, as a converged warp does. Lanes
//   that are not in the mask, masks that differ between lanes, or a lane that exits while
//   others wait for it are errors (undefined behaviour on a GPU), reported as exceptions.
// - atomicAdd: a plain read-add-write; threads are never preempted between the two.
// - MSDA_TRAP (the kernels' __trap with a printed reason): an exception carrying the message.
// Not modelled, so the kernels must not use them: shared memory, block barriers, other warp
// intrinsics, memory fences, streams.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The built-in variables, as seen by the thread (fiber) that runs.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

namespace cuda_emulation {

struct Trap : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void trap(const char* format, Args... args) {
  char message[512];
  std::snprintf(message, sizeof(message), format, args...);
  throw Trap(message);
}

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  bool done = false;
};

struct Warp {
  uint64_t value[2][warpSize][2];  // a lane's operand of its collective number s, at [s % 2]
  unsigned mask[2][warpSize];
  uint64_t arrived[warpSize];  // collectives each lane has reached
};

// The block that runs, with the scheduler's state.
struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<unsigned> order;  // thread resumption order
  ucontext_t scheduler;
  unsigned current = 0;
  std::function<void()> body;
  std::exception_ptr error;
  uint64_t progress = 0;  // arrivals and exits: a round without any means deadlock
};

inline Block& block() {
  static Block b;
  return b;
}

inline void yield() {
  Block& b = block();
  swapcontext(&b.fibers[b.current].context, &b.scheduler);
}

inline void fiber_main() {
  Block& b = block();
  try {
    b.body();
  } catch (...) {
    if (!b.error) b.error = std::current_exception();
  }
  b.fibers[b.current].done = true;
}  // returns to uc_link: the scheduler

inline void run_block(unsigned threads) {
  constexpr size_t kStack = 256 * 1024;
  Block& b = block();
  b.fibers.resize(threads);
  b.warps.assign((threads + warpSize - 1) / warpSize, Warp{});
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    f.done = false;
    f.stack.resize(kStack);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  unsigned live = threads;
  while (live > 0) {
    const uint64_t progress = b.progress;
    for (unsigned t : b.order) {
      if (b.fibers[t].done) continue;
      b.current = t;
      threadIdx = dim3(t);
      swapcontext(&b.scheduler, &b.fibers[t].context);
      if (b.error) std::rethrow_exception(b.error);
      if (b.fibers[t].done) {
        --live;
        ++b.progress;
      }
    }
    if (live > 0 && b.progress == progress) {
      throw Trap("deadlock: threads wait in a warp collective that other lanes never reach");
    }
  }
}

// Runs kernel(args...) on a grid of `blocks` blocks of `threads` threads. seed < 0: blocks and
// threads in index order; otherwise both orders are shuffled with that seed.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned blocks, unsigned threads, int64_t seed,
            Args... args) {
  Block& b = block();
  std::vector<unsigned> block_order(blocks);
  std::iota(block_order.begin(), block_order.end(), 0u);
  b.order.resize(threads);
  std::iota(b.order.begin(), b.order.end(), 0u);
  std::mt19937_64 random(seed < 0 ? 0 : static_cast<uint64_t>(seed));
  if (seed >= 0) std::shuffle(block_order.begin(), block_order.end(), random);
  gridDim = dim3(blocks);
  blockDim = dim3(threads);
  b.body = [&] { kernel(static_cast<Params>(args)...); };
  b.error = nullptr;
  for (unsigned block_index : block_order) {
    if (seed >= 0) std::shuffle(b.order.begin(), b.order.end(), random);
    blockIdx = dim3(block_index);
    run_block(threads);
  }
}

}  // namespace cuda_emulation

#define MSDA_TRAP(...) ::cuda_emulation::trap(__VA_ARGS__)

template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "unsupported type");
  using cuda_emulation::Trap;
  auto& b = cuda_emulation::block();
  cuda_emulation::Warp& warp = b.warps[threadIdx.x / warpSize];
  const unsigned warp_first = threadIdx.x / warpSize * warpSize;
  const int lane = threadIdx.x % warpSize;
  if (!(mask >> lane & 1u)) throw Trap("__shfl_xor_sync: the calling lane is not in its mask");
  const uint64_t s = warp.arrived[lane];
  std::memcpy(warp.value[s % 2][lane], &var, sizeof(T));
  warp.mask[s % 2][lane] = mask;
  warp.arrived[lane] = s + 1;
  ++b.progress;
  for (;;) {  // until every lane of the mask has arrived at collective s
    bool all = true;
    for (int other = 0; other < warpSize; ++other) {
      if (!(mask >> other & 1u) || warp.arrived[other] > s) continue;
      if (warp_first + other >= b.fibers.size() || b.fibers[warp_first + other].done) {
        throw Trap("__shfl_xor_sync: a lane of the mask has exited or does not exist");
      }
      all = false;
    }
    if (all) break;
    cuda_emulation::yield();
  }
  for (int other = 0; other < warpSize; ++other) {
    if ((mask >> other & 1u) && warp.mask[s % 2][other] != mask) {
      throw Trap("__shfl_xor_sync: lanes of one collective passed different masks");
    }
  }
  int source = lane ^ lane_mask;
  if (source / width != lane / width) source = lane;  // outside the lane's segment: own value
  if (!(mask >> source & 1u)) throw Trap("__shfl_xor_sync: the source lane is not in the mask");
  T result;
  std::memcpy(&result, warp.value[s % 2][source], sizeof(T));
  return result;
}
