// CUDA-only helpers: accumulation types for half, launch configuration, error checks.
// Never include lib_api.h here (it needs curand under nvcc).
#pragma once

#if defined(FRCNN_CUDA_EMULATE)
#include "common/cuda_emu/cuda_emu.h"  // the CPU execution harness: host definitions
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdlib>
#include <string>
#include <utility>

#include "common/checks.h"
#include "common/host_device.h"

namespace frcnn {

template <typename T> struct Acc { using type = T; };
template <> struct Acc<__half> { using type = float; };

template <typename T> DEVICE_INLINE typename Acc<T>::type load(const T* p) { return *p; }
template <> DEVICE_INLINE float load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> DEVICE_INLINE void store(T* p, typename Acc<T>::type v) { *p = v; }
template <> DEVICE_INLINE void store<__half>(__half* p, float v) { *p = __float2half(v); }

constexpr int kThreads = 256;

inline int blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = ceil_div(n, threads);
  if (b < 1) b = 1;
  return static_cast<int>(b > 65535 * 32 ? 65535 * 32 : b);
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// FRCNN_CUDA_SYNC_CHECK=1 (read once): every launch is followed by a synchronisation of its
// stream and an error check, so that a failing kernel is named where it fails rather than at
// the next synchronising call. Skipped while the stream is being captured into a CUDA graph
// (a capturing stream cannot be synchronised).
inline bool sync_check_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FRCNN_CUDA_SYNC_CHECK");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

inline void after_launch(const char* kernel, cudaStream_t stream) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_check_enabled()) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    e = cudaStreamIsCapturing(stream, &capture);
    if (e == cudaSuccess && capture == cudaStreamCaptureStatusNone) e = cudaStreamSynchronize(stream);
  }
  if (e != cudaSuccess)
    throw Error(std::string("CUDA kernel ") + kernel + ": " + cudaGetErrorString(e));
}

// Every kernel launch of the library goes through here (never `<<<...>>>` elsewhere): nvcc
// and the CPU execution harness (FRCNN_CUDA_EMULATE) then share the kernel sources, and the
// launch is checked (after_launch) with the kernel's name.
template <typename... KArgs, typename... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, Args&&... args) {
#if defined(FRCNN_CUDA_EMULATE)
  emu::launch(name, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
  after_launch(name, stream);
}

}  // namespace frcnn

// Dynamic shared memory of a kernel (the launch's smem bytes): `T* name` in effect.
#if defined(FRCNN_CUDA_EMULATE)
#define FRCNN_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::emu::dynamic_shared())
#else
#define FRCNN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Dispatch on a GPU dtype (float32, float64, float16).
#define FRCNN_DISPATCH_CUDA(DT, NAME, ...)                                                \
  switch (DT) {                                                                           \
    case ::frcnn::DType::kFloat32: { using scalar_t = float; __VA_ARGS__; break; }        \
    case ::frcnn::DType::kFloat64: { using scalar_t = double; __VA_ARGS__; break; }       \
    case ::frcnn::DType::kFloat16: { using scalar_t = __half; __VA_ARGS__; break; }       \
    default: throw ::frcnn::Error(std::string(NAME) + ": unsupported dtype on gpu");      \
  }
