// Portable host/device qualifiers, a grid-stride loop and small integer helpers.
// Included by both the host compiler (C++ files) and nvcc (.cu files).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__
#define HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#define DEVICE_INLINE __device__ __forceinline__
// Grid-stride loop over [0, n) with a 64-bit index.
#define CUDA_1D_KERNEL_LOOP(i, n)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;    \
       i < static_cast<int64_t>(n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)
#elif defined(FRCNN_CUDA_EMULATE)
// The .cu sources compiled by the host compiler for the CPU execution harness
// (common/cuda_emu/cuda_emu.h defines the CUDA keywords and built-in variables).
#define HOST_DEVICE
#define HOST_DEVICE_INLINE inline
#define DEVICE_INLINE inline
#define CUDA_1D_KERNEL_LOOP(i, n)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;    \
       i < static_cast<int64_t>(n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)
#else
#define HOST_DEVICE
#define HOST_DEVICE_INLINE inline
#endif

// CPU hot loops compiled for AVX-512, AVX2 and baseline x86-64, picked at load time (GCC's
// target_clones). Compiled out under ASan: GCC cannot clone instrumented functions
// (tools/sanitizer_suppressions.md).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__CUDACC__) && !defined(__SANITIZE_ADDRESS__)
#define FRCNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FRCNN_CLONES
#endif

namespace frcnn {

HOST_DEVICE_INLINE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Data types the kernels are instantiated for, numbered as MXNet's MXDType.
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2 };
// Bytes of one element.
inline size_t dtype_size(DType dt) {
  return dt == DType::kFloat64 ? 8 : (dt == DType::kFloat32 ? 4 : 2);
}

}  // namespace frcnn
