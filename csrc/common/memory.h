// Device memory helpers callable from host-compiled code.
#pragma once

#include <cstddef>

namespace frcnn {

// cudaMemsetAsync(ptr, 0, bytes, stream); defined only in CUDA builds.
void zero_cuda(void* ptr, size_t bytes, void* stream);

}  // namespace frcnn
