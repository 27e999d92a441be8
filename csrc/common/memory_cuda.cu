#include "common/cuda_utils.cuh"
#include "common/memory.h"

namespace frcnn {

void zero_cuda(void* ptr, size_t bytes, void* stream) {
  if (bytes == 0) return;
  cudaError_t e = cudaMemsetAsync(ptr, 0, bytes, as_stream(stream));
  if (e != cudaSuccess) throw Error(std::string("zero fill: CUDA error ") + cudaGetErrorString(e));
}

}  // namespace frcnn
