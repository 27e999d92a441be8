// CPU execution harness for the CUDA kernels (FRCNN_CUDA_EMULATE): the .cu sources compiled by
// the host C++ compiler, without nvcc or the CUDA headers, and run on the host.
//
// What it provides (host definitions, nothing from the CUDA toolkit):
//   keywords        __global__ __device__ __host__ __forceinline__ __shared__ __launch_bounds__
//   built-ins       threadIdx blockIdx (uint3), blockDim gridDim (dim3): thread_local
//   runtime         cudaStream_t cudaError_t cudaGetErrorString cudaGetLastError
//                   cudaMemsetAsync cudaMemcpyAsync cudaStreamSynchronize cudaStreamIsCapturing
//                   cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)
//   device code     __syncthreads __threadfence atomicAdd(int/float/double) min max __ldg
//                   __half __half2float __float2half (bit-exact with CUDA's conversions)
//   cub             DeviceSegmentedRadixSort::SortPairs, DeviceScan::ExclusiveSum (cub.h)
// Warp-level intrinsics (shuffles, votes, __syncwarp) have no CPU equivalent here: using one
// fails the emulated build with a static_assert naming it.
//
// Execution model (emu::launch, called by frcnn::launch): launches are serialised
// process-wide; the blocks of a grid run one after another; the threads of a block are
// cooperative threads (ucontext fibers, each on its own stack with a guard page) run in
// threadIdx order, each until it reaches a __syncthreads or exits; when no thread can run,
// the barrier is checked and released. `__shared__` is `static`: a function-local static is
// shared by the threads of the one block running, as shared memory is. Dynamic shared memory
// (FRCNN_DYNAMIC_SHARED) is a per-launch buffer, refilled with 0xA5 before each block.
// (OS threads per emulated thread were measured at ~5 ms per 256-thread barrier on a 2-core
// machine; fibers make a barrier exact, deterministic and about a hundred times cheaper.)
//
// Refused as the hardware (sm_90) refuses them, as frcnn::Error naming the kernel: grid.x over
// 2^31-1, grid.y/z over 65535, blocks over 1024 threads (x, y <= 1024, z <= 64), zero
// dimensions, dynamic shared memory over 48 KB without the cudaFuncSetAttribute opt-in (per
// kernel) or over the opt-in. Barriers are checked exactly: a __syncthreads that part of the
// block reaches while the rest has exited the kernel, and threads of one block waiting at
// different __syncthreads, raise. A launch that makes no progress (no thread reaching a
// barrier or exiting) for FRCNN_CUDA_EMU_TIMEOUT seconds (default 10: a spin wait, an endless
// loop) cannot be stopped: a watchdog aborts the process with a message naming the kernel.
//
// Not modelled: static shared memory sizes (nvcc refuses more than 48 KB at compile time),
// warps, timing, the weak memory model, concurrent blocks or threads (so no real contention
// on atomics, and intra-block races resolve in one fixed order).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/checks.h"

#if defined(__CUDACC__)
#error "cuda_emu.h is the CPU harness: compile the .cu sources with the host C++ compiler"
#endif

// ---- keywords -----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

// ---- built-in variables -------------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};
inline thread_local uint3 threadIdx = {0, 0, 0};
inline thread_local uint3 blockIdx = {0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// ---- runtime API --------------------------------------------------------------------------
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

// Launch errors are raised by emu::launch itself (with the kernel's name), so nothing is
// ever left pending here.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
// Everything runs synchronously on the calling thread's launch.
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* s) {
  if (s == nullptr) return cudaErrorInvalidValue;
  *s = cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  if (bytes == 0) return cudaSuccess;
  if (p == nullptr) return cudaErrorInvalidValue;
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return cudaErrorInvalidValue;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

// ---- __half (IEEE binary16), conversions exactly as CUDA's (round to nearest even) ---------
struct __half {
  unsigned short x;
  __half() = default;
  // Explicit on purpose: arithmetic on __half itself (CUDA's half operators) is not emulated;
  // an implicit conversion would silently compute in float instead.
  explicit __half(float f);
  explicit operator float() const;
};

inline __half __float2half(const float f) {  // CUDA's __internal_float2half + RNE
  unsigned int x;
  std::memcpy(&x, &f, sizeof(f));
  const unsigned int u = x & 0x7fffffffU;
  const unsigned int sign = (x >> 16U) & 0x8000U;
  unsigned int remainder, result;
  if (u >= 0x7f800000U) {  // NaN / Inf
    remainder = 0U;
    result = (u == 0x7f800000U) ? (sign | 0x7c00U) : 0x7fffU;
  } else if (u > 0x477fefffU) {  // overflows to Inf after rounding
    remainder = 0x80000000U;
    result = sign | 0x7bffU;
  } else if (u >= 0x38800000U) {  // normal
    remainder = u << 19U;
    result = sign | ((u - 0x38000000U) >> 13U);
  } else if (u < 0x33000001U) {  // +-0
    remainder = u;
    result = sign;
  } else {  // subnormal
    const unsigned int exponent = u >> 23U;
    const unsigned int shift = 0x7eU - exponent;
    const unsigned int mantissa = (u & 0x7fffffU) | 0x800000U;
    remainder = mantissa << (32U - shift);
    result = (sign | (mantissa >> shift)) & 0xffffU;
  }
  if (remainder > 0x80000000U || (remainder == 0x80000000U && (result & 1U) != 0U)) ++result;
  __half h;
  h.x = static_cast<unsigned short>(result);
  return h;
}
inline __half __float2half_rn(const float f) { return __float2half(f); }

inline float __half2float(const __half h) {  // CUDA's __internal_half2float
  unsigned int sign = (static_cast<unsigned int>(h.x) >> 15U) & 1U;
  unsigned int exponent = (static_cast<unsigned int>(h.x) >> 10U) & 0x1fU;
  unsigned int mantissa = (static_cast<unsigned int>(h.x) & 0x3ffU) << 13U;
  if (exponent == 0x1fU) {  // NaN (sign dropped, canonical payload) or Inf
    sign = mantissa != 0U ? (sign >> 1U) : sign;
    mantissa = mantissa != 0U ? 0x7fffffU : 0U;
    exponent = 0xffU;
  } else if (exponent == 0U) {
    if (mantissa != 0U) {
      unsigned int msb;
      exponent = 0x71U;
      do {
        msb = mantissa & 0x400000U;
        mantissa <<= 1U;
        --exponent;
      } while (msb == 0U);
      mantissa &= 0x7fffffU;
    }
  } else {
    exponent += 0x70U;
  }
  const unsigned int u = (sign << 31U) | (exponent << 23U) | mantissa;
  float f;
  std::memcpy(&f, &u, sizeof(u));
  return f;
}

inline __half::__half(float f) : x(__float2half(f).x) {}
inline __half::operator float() const { return __half2float(*this); }

// ---- device functions ---------------------------------------------------------------------
namespace emu {
template <typename... T>
constexpr bool always_false = false;
void syncthreads(const char* file, int line);
void* dynamic_shared();
}  // namespace emu

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
inline T __ldg(const T* p) { return *p; }

inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
namespace emu {
template <typename F, typename U>
inline F atomic_add_float(F* p, F v) {
  static_assert(sizeof(F) == sizeof(U), "bit type");
  U* q = reinterpret_cast<U*>(p);
  U old_bits = __atomic_load_n(q, __ATOMIC_RELAXED);
  for (;;) {
    F old;
    std::memcpy(&old, &old_bits, sizeof(F));
    const F sum = old + v;
    U new_bits;
    std::memcpy(&new_bits, &sum, sizeof(F));
    if (__atomic_compare_exchange_n(q, &old_bits, new_bits, true, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
      return old;
  }
}
}  // namespace emu
inline float atomicAdd(float* p, float v) { return emu::atomic_add_float<float, uint32_t>(p, v); }
inline double atomicAdd(double* p, double v) {
  return emu::atomic_add_float<double, uint64_t>(p, v);
}
template <typename P, typename V>
inline P atomicAdd(P*, V) {
  static_assert(emu::always_false<P, V>,
                "cuda_emu: atomicAdd is emulated for int, unsigned, unsigned long long, float "
                "and double only (no __half / mixed-type atomicAdd on the CPU harness)");
  return P();
}

// CUDA's min/max: integers by value (common type), floating point as fminf/fmin (a NaN
// operand yields the other one).
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
template <typename T, typename U,
          typename = std::enable_if_t<std::is_integral<T>::value && std::is_integral<U>::value>>
inline std::common_type_t<T, U> min(T a, U b) {
  using C = std::common_type_t<T, U>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(a) : static_cast<C>(b);
}
template <typename T, typename U,
          typename = std::enable_if_t<std::is_integral<T>::value && std::is_integral<U>::value>>
inline std::common_type_t<T, U> max(T a, U b) {
  using C = std::common_type_t<T, U>;
  return static_cast<C>(a) > static_cast<C>(b) ? static_cast<C>(a) : static_cast<C>(b);
}

// Warp-level intrinsics: lockstep warps are not modelled, so their use fails the build.
#define FRCNN_EMU_UNSUPPORTED(NAME)                                                        \
  template <typename... T>                                                                 \
  inline int NAME(T...) {                                                                  \
    static_assert(emu::always_false<T...>,                                                 \
                  "cuda_emu: " #NAME " (warp-level intrinsic) is not supported by the CPU " \
                  "execution harness");                                                    \
    return 0;                                                                              \
  }
FRCNN_EMU_UNSUPPORTED(__shfl_sync)
FRCNN_EMU_UNSUPPORTED(__shfl_up_sync)
FRCNN_EMU_UNSUPPORTED(__shfl_down_sync)
FRCNN_EMU_UNSUPPORTED(__shfl_xor_sync)
FRCNN_EMU_UNSUPPORTED(__ballot_sync)
FRCNN_EMU_UNSUPPORTED(__any_sync)
FRCNN_EMU_UNSUPPORTED(__all_sync)
FRCNN_EMU_UNSUPPORTED(__match_any_sync)
FRCNN_EMU_UNSUPPORTED(__syncwarp)
FRCNN_EMU_UNSUPPORTED(__activemask)
FRCNN_EMU_UNSUPPORTED(__syncthreads_count)
FRCNN_EMU_UNSUPPORTED(__syncthreads_and)
FRCNN_EMU_UNSUPPORTED(__syncthreads_or)
#undef FRCNN_EMU_UNSUPPORTED

// ---- the launcher -------------------------------------------------------------------------
namespace emu {

// Limits of the emulated device (sm_90).
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockX = 1024, kMaxBlockY = 1024, kMaxBlockZ = 64;
constexpr unsigned kMaxGridX = 2147483647u, kMaxGridYZ = 65535;
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kMaxSharedOptinBytes = 227 * 1024;
constexpr size_t kMaxParamBytes = 32764;
constexpr size_t kFiberStackBytes = 512 * 1024;

// Thrown inside an emulated thread to unwind it once its block has failed.
struct Abort {};

namespace detail {

inline double env_timeout() {
  const char* v = std::getenv("FRCNN_CUDA_EMU_TIMEOUT");
  if (v != nullptr && *v != '\0') {
    const double t = std::atof(v);
    if (t > 0) return t;
  }
  return 10.0;
}

enum FiberState { kReady, kWaiting, kExited };

// One emulated thread: a context on its own stack (with a guard page below it).
struct Fiber {
  ucontext_t ctx;
  void* mapping = nullptr;
  char* stack = nullptr;
  uint3 idx;
  FiberState state = kExited;
  const char* file = nullptr;
  int line = 0;
};

struct State {
  std::mutex launch_mutex;  // one launch at a time, process-wide
  std::vector<std::unique_ptr<Fiber>> fibers;
  ucontext_t sched;         // the launching thread's context
  Fiber* current = nullptr;
  void (*body)(void*) = nullptr;  // runs the kernel for the current fiber
  void* job = nullptr;
  const char* kernel = "";
  uint3 block = {0, 0, 0};
  bool failed = false;
  std::string error;
  std::unique_ptr<unsigned char[]> smem;
  size_t smem_bytes = 0;
  std::mutex attr_mutex;
  std::unordered_map<const void*, size_t> smem_optin;  // per kernel
  // watchdog: aborts the process when a launch makes no progress for `timeout_s`
  std::atomic<double> timeout_s{env_timeout()};
  std::atomic<uint64_t> progress{0};
  std::atomic<bool> active{false};
  std::atomic<const char*> active_kernel{""};
  bool watchdog_started = false;
};

inline State& state() {
  static State* s = new State;  // never destroyed: the watchdog may outlive static teardown
  return *s;
}

inline std::string site(const char* file, int line) {
  std::string f = file ? file : "?";
  const size_t slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(line);
}

inline std::string block_str(const uint3& b) {
  return "(" + std::to_string(b.x) + ", " + std::to_string(b.y) + ", " + std::to_string(b.z) +
         ")";
}

inline void fail(State& s, const std::string& msg) {
  if (!s.failed) {
    s.failed = true;
    s.error = msg + " in block " + block_str(s.block);
  }
}

inline void watchdog_main() {
  State& s = state();
  uint64_t last = 0;
  auto since = std::chrono::steady_clock::now();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const uint64_t p = s.progress.load();
    const auto now = std::chrono::steady_clock::now();
    if (!s.active.load() || p != last) {
      last = p;
      since = now;
      continue;
    }
    const double t = s.timeout_s.load();
    if (std::chrono::duration<double>(now - since).count() > t) {
      std::fprintf(stderr,
                   "CUDA kernel %s: no progress in %.1f s (a thread neither reaches a "
                   "__syncthreads nor exits: a spin wait or an endless loop); the CPU "
                   "execution harness cannot stop it: aborting\n",
                   s.active_kernel.load(), t);
      std::fflush(stderr);
      std::abort();
    }
  }
}

inline void fiber_entry() {
  State& s = state();
  Fiber& f = *s.current;
  try {
    s.body(s.job);
  } catch (const Abort&) {
  } catch (const std::exception& e) {
    fail(s, std::string("exception in device code: ") + e.what());
  } catch (...) {
    fail(s, "exception in device code");
  }
  f.state = kExited;
  // returning resumes uc_link: the scheduler
}

inline void ensure_fibers(State& s, unsigned n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  while (s.fibers.size() < n) {
    std::unique_ptr<Fiber> f(new Fiber);
    void* m = mmap(nullptr, kFiberStackBytes + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw frcnn::Error("CPU execution harness: no memory for thread stacks");
    mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
    f->mapping = m;
    f->stack = static_cast<char*>(m) + page;
    s.fibers.push_back(std::move(f));
  }
}

// Runs one block: every thread until it waits at a barrier or exits, then the barrier is
// checked and released, until all have exited.
inline void run_block(State& s, unsigned n, const dim3& block) {
  for (unsigned t = 0; t < n; ++t) {
    Fiber& f = *s.fibers[t];
    f.idx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    f.state = kReady;
    f.file = nullptr;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kFiberStackBytes;
    f.ctx.uc_link = &s.sched;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  for (;;) {
    for (unsigned t = 0; t < n; ++t) {
      Fiber& f = *s.fibers[t];
      if (f.state != kReady) continue;
      s.current = &f;
      threadIdx = f.idx;
      swapcontext(&s.sched, &f.ctx);
      s.progress.fetch_add(1, std::memory_order_relaxed);
    }
    s.current = nullptr;
    unsigned waiting = 0, exited = 0;
    const Fiber* first = nullptr;
    const Fiber* other = nullptr;
    for (unsigned t = 0; t < n; ++t) {
      const Fiber& f = *s.fibers[t];
      if (f.state == kExited) {
        ++exited;
        continue;
      }
      ++waiting;
      if (first == nullptr)
        first = &f;
      else if (other == nullptr && (f.line != first->line || std::strcmp(f.file, first->file)))
        other = &f;
    }
    if (waiting == 0) return;
    if (!s.failed && exited > 0)
      fail(s, "__syncthreads at " + site(first->file, first->line) + " reached by only " +
                  std::to_string(waiting) + " of " + std::to_string(n) + " threads; the other " +
                  std::to_string(exited) +
                  " exited the kernel (a barrier must be reached by the whole block)");
    if (!s.failed && other != nullptr)
      fail(s, "threads of one block wait at different barriers: __syncthreads at " +
                  site(first->file, first->line) + " and at " + site(other->file, other->line) +
                  " (a barrier in divergent code)");
    // the barrier completes; after a failure the waiting threads resume only to unwind
    for (unsigned t = 0; t < n; ++t)
      if (s.fibers[t]->state == kWaiting) s.fibers[t]->state = kReady;
  }
}

template <typename Kernel, typename Tuple>
struct Job {
  Kernel kernel;
  const Tuple* params;
};

template <typename JobT>
void run_thread(void* p) {
  JobT& job = *static_cast<JobT*>(p);
  auto copy = *job.params;  // each thread gets its own copy of the parameters
  std::apply(job.kernel, copy);
}

}  // namespace detail

inline void set_timeout(double seconds) { detail::state().timeout_s.store(seconds); }
inline double timeout() { return detail::state().timeout_s.load(); }

inline void* dynamic_shared() { return detail::state().smem.get(); }

inline void syncthreads(const char* file, int line) {
  detail::State& s = detail::state();
  detail::Fiber* f = s.current;
  if (f == nullptr) {
    std::fprintf(stderr, "__syncthreads called outside a kernel launch (%s)\n",
                 detail::site(file, line).c_str());
    std::abort();
  }
  if (s.failed) throw Abort{};
  f->state = detail::kWaiting;
  f->file = file;
  f->line = line;
  swapcontext(&f->ctx, &s.sched);
  if (s.failed) throw Abort{};
}

template <typename... KArgs>
inline cudaError_t func_set_attribute(void (*kernel)(KArgs...), cudaFuncAttribute attr,
                                      int value) {
  detail::State& s = detail::state();
  std::lock_guard<std::mutex> lk(s.attr_mutex);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > kMaxSharedOptinBytes)
      return cudaErrorInvalidValue;
    s.smem_optin[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(value);
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
    return (value >= -1 && value <= 100) ? cudaSuccess : cudaErrorInvalidValue;
  return cudaErrorInvalidValue;
}

// Runs kernel<<<grid, block, smem, stream>>>(args...) on the host; see the top of this file.
template <typename... KArgs, typename... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "kernel launched with a wrong arity");
  static_assert(!std::disjunction<std::is_reference<KArgs>...>::value,
                "kernel parameters cannot be references");
  using Tuple = std::tuple<std::decay_t<KArgs>...>;
  static_assert(sizeof(Tuple) <= kMaxParamBytes, "kernel parameters over 32764 bytes");
  const std::string kname = std::string("CUDA kernel ") + name + ": ";
  auto refuse = [&](const std::string& why) { throw frcnn::Error(kname + why); };
  // the hardware's launch limits
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0)
    refuse("invalid configuration argument: a zero grid or block dimension (grid (" +
           std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " +
           std::to_string(grid.z) + "), block (" + std::to_string(block.x) + ", " +
           std::to_string(block.y) + ", " + std::to_string(block.z) + "))");
  if (grid.x > kMaxGridX)
    refuse("invalid configuration argument: grid.x = " + std::to_string(grid.x) +
           " (at most 2^31-1)");
  if (grid.y > kMaxGridYZ || grid.z > kMaxGridYZ)
    refuse("invalid configuration argument: grid.y = " + std::to_string(grid.y) +
           ", grid.z = " + std::to_string(grid.z) + " (at most 65535)");
  const uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
  if (block.x > kMaxBlockX || block.y > kMaxBlockY || block.z > kMaxBlockZ ||
      nthreads > kMaxThreadsPerBlock)
    refuse("invalid configuration argument: block (" + std::to_string(block.x) + ", " +
           std::to_string(block.y) + ", " + std::to_string(block.z) + ") = " +
           std::to_string(nthreads) + " threads (at most 1024; x, y <= 1024, z <= 64)");
  detail::State& s = detail::state();
  {
    std::lock_guard<std::mutex> lk(s.attr_mutex);
    auto it = s.smem_optin.find(reinterpret_cast<const void*>(kernel));
    const size_t limit = it == s.smem_optin.end() ? kDefaultSharedBytes : it->second;
    if (smem > limit)
      refuse("invalid argument: " + std::to_string(smem) + " bytes of dynamic shared memory, " +
             (it == s.smem_optin.end()
                  ? std::string("over the 48 KB default without the opt-in "
                                "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)")
                  : "over the " + std::to_string(limit) + " bytes opted in"));
  }
  std::lock_guard<std::mutex> serial(s.launch_mutex);
  if (s.current != nullptr) refuse("launched from device code (dynamic parallelism)");
  if (!s.watchdog_started) {
    std::thread(detail::watchdog_main).detach();
    s.watchdog_started = true;
  }
  const unsigned n = static_cast<unsigned>(nthreads);
  detail::ensure_fibers(s, n);
  const Tuple params(std::forward<Args>(args)...);
  using JobT = detail::Job<void (*)(KArgs...), Tuple>;
  JobT job{kernel, &params};
  s.body = &detail::run_thread<JobT>;
  s.job = &job;
  s.kernel = name;
  s.failed = false;
  s.error.clear();
  s.smem_bytes = smem;
  s.smem.reset(smem ? new unsigned char[smem] : nullptr);
  blockDim = block;
  gridDim = grid;
  s.active_kernel.store(name);
  s.active.store(true);
  for (unsigned z = 0; z < grid.z && !s.failed; ++z)
    for (unsigned y = 0; y < grid.y && !s.failed; ++y)
      for (unsigned x = 0; x < grid.x && !s.failed; ++x) {
        s.block = {x, y, z};
        blockIdx = s.block;
        if (smem) std::memset(s.smem.get(), 0xA5, smem);  // shared memory starts undefined
        detail::run_block(s, n, block);
      }
  s.active.store(false);
  s.body = nullptr;
  s.job = nullptr;
  s.smem.reset();
  s.smem_bytes = 0;
  if (s.failed) {
    s.failed = false;
    refuse(s.error);
  }
}

}  // namespace emu

template <typename... KArgs>
inline cudaError_t cudaFuncSetAttribute(void (*kernel)(KArgs...), cudaFuncAttribute attr,
                                        int value) {
  return emu::func_set_attribute(kernel, attr, value);
}
