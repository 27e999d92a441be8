// CUDA-only helpers: accumulation types for half, launch configuration, error checks.
// Never include lib_api.h here (it needs curand under nvcc).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

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

inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string(what) + ": CUDA error " + cudaGetErrorString(e));
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace frcnn

// Dispatch on a GPU dtype (float32, float64, float16).
#define FRCNN_DISPATCH_CUDA(DT, NAME, ...)                                                \
  switch (DT) {                                                                           \
    case ::frcnn::DType::kFloat32: { using scalar_t = float; __VA_ARGS__; break; }        \
    case ::frcnn::DType::kFloat64: { using scalar_t = double; __VA_ARGS__; break; }       \
    case ::frcnn::DType::kFloat16: { using scalar_t = __half; __VA_ARGS__; break; }       \
    default: throw ::frcnn::Error(std::string(NAME) + ": unsupported dtype on gpu");      \
  }
