// Test-only entry points of frcnn_ops._C_emu (names start with `_emu_`): kernels written
// against the CPU execution harness to show what it refuses (launch limits, broken barriers)
// and what it computes (barriers in loops, half conversions, the CUB emulation).
// Built into _C_emu only (CMakeLists.txt), never into a CUDA build.
#include <chrono>
#include <thread>

#include "common/cuda_utils.cuh"
#include "common/cuda_emu/cub.h"
#include "python/bind.h"

namespace frcnn {
namespace {

namespace py = pybind11;

// Counts the threads that ran; K tells the kernels apart (the shared memory opt-in is per
// kernel). With dynamic shared memory, every thread writes its byte and checks it.
template <int K>
__global__ void count_kernel(unsigned long long* count, size_t smem) {
  FRCNN_DYNAMIC_SHARED(unsigned char, buf);
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if (smem > 0 && t < smem) buf[t] = 1;
  atomicAdd(count, 1ull);
}

unsigned long long launch_config(int kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                 unsigned by, unsigned bz, size_t smem, int optin) {
  unsigned long long count = 0;
  auto k = kernel == 0 ? count_kernel<0> : count_kernel<1>;
  if (optin >= 0) {
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    if (e != cudaSuccess)
      throw Error(std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(e));
  }
  launch("count_kernel", k, dim3(gx, gy, gz), dim3(bx, by, bz), smem, nullptr, &count, smem);
  return count;
}

// Thread 0 leaves before the barrier the others wait at.
__global__ void partial_barrier_kernel(int* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// Half of the block waits at one barrier, half at another.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// Thread 0 neither arrives nor exits for `ms` milliseconds: the watchdog aborts the process.
__global__ void slow_thread_kernel(int* out, int ms) {
  if (threadIdx.x == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return;
  }
  __syncthreads();
  out[threadIdx.x] = 1;
}

void barrier_case(const std::string& which, double timeout_s) {
  std::vector<int> out(1024, 0);
  const double prev = emu::timeout();
  struct Restore {
    double t;
    ~Restore() { emu::set_timeout(t); }
  } restore{prev};
  emu::set_timeout(timeout_s);
  if (which == "partial")
    launch("partial_barrier_kernel", partial_barrier_kernel, 2, 64, 0, nullptr, out.data());
  else if (which == "divergent")
    launch("divergent_barrier_kernel", divergent_barrier_kernel, 1, 64, 0, nullptr, out.data());
  else if (which == "timeout")
    launch("slow_thread_kernel", slow_thread_kernel, 1, 64, 0, nullptr, out.data(),
           static_cast<int>(timeout_s * 5000));
  else
    throw py::value_error("unknown barrier case " + which);
}

// Per block, the sum of (thread index + 1) over a 3-D block, by a shared-memory tree
// reduction with __syncthreads in a loop that ends in `break`, over a grid-stride loop of
// blocks; also the block's threadIdx/blockIdx bookkeeping.
__global__ void block_sum_kernel(int64_t* out, int nblocks) {
  __shared__ int64_t partial[1024];
  const int n = blockDim.x * blockDim.y * blockDim.z;
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  for (int b = blockIdx.x + gridDim.x * blockIdx.y; b < nblocks; b += gridDim.x * gridDim.y) {
    partial[t] = t + 1 + int64_t(b) * 1000000;
    __syncthreads();
    for (int stride = 1;; stride *= 2) {
      if (stride >= n) break;  // uniform
      if (t % (2 * stride) == 0 && t + stride < n) partial[t] += partial[t + stride];
      __syncthreads();
    }
    if (t == 0) out[b] = partial[0];
    __syncthreads();
  }
}

py::array_t<int64_t> block_sum(int nblocks, unsigned gx, unsigned gy, unsigned bx, unsigned by,
                               unsigned bz) {
  py::array_t<int64_t> out(nblocks);
  launch("block_sum_kernel", block_sum_kernel, dim3(gx, gy), dim3(bx, by, bz), 0, nullptr,
         out.mutable_data(), nblocks);
  return out;
}

py::array_t<uint16_t> float2half(py::array_t<float, py::array::c_style | py::array::forcecast> a) {
  py::array_t<uint16_t> out(a.size());
  const float* x = a.data();
  uint16_t* o = out.mutable_data();
  for (py::ssize_t i = 0; i < a.size(); ++i) o[i] = __float2half(x[i]).x;
  return out;
}

py::array_t<float> half2float(py::array_t<uint16_t, py::array::c_style | py::array::forcecast> a) {
  py::array_t<float> out(a.size());
  const uint16_t* x = a.data();
  float* o = out.mutable_data();
  for (py::ssize_t i = 0; i < a.size(); ++i) {
    __half h;
    h.x = x[i];
    o[i] = __half2float(h);
  }
  return out;
}

template <typename K>
py::tuple sort_pairs_t(py::array_t<K, py::array::c_style | py::array::forcecast> keys,
                       py::array_t<uint32_t, py::array::c_style | py::array::forcecast> vals,
                       py::array_t<int, py::array::c_style | py::array::forcecast> offsets,
                       int begin_bit, int end_bit) {
  const int n = static_cast<int>(keys.size());
  const int segs = static_cast<int>(offsets.size()) - 1;
  py::array_t<K> ko(n);
  py::array_t<uint32_t> vo(n);
  std::fill(ko.mutable_data(), ko.mutable_data() + n, K(0));
  std::fill(vo.mutable_data(), vo.mutable_data() + n, 0xffffffffu);
  size_t bytes = 0;
  cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairs(
      nullptr, bytes, keys.data(), ko.mutable_data(), vals.data(), vo.mutable_data(), n, segs,
      offsets.data(), offsets.data() + 1, begin_bit, end_bit);
  if (e != cudaSuccess) throw Error("size query failed");
  std::vector<char> temp(bytes);
  e = cub::DeviceSegmentedRadixSort::SortPairs(temp.data(), bytes, keys.data(), ko.mutable_data(),
                                               vals.data(), vo.mutable_data(), n, segs,
                                               offsets.data(), offsets.data() + 1, begin_bit,
                                               end_bit);
  if (e != cudaSuccess) throw Error(std::string("SortPairs: ") + cudaGetErrorString(e));
  return py::make_tuple(ko, vo);
}

py::tuple sort_pairs(py::array keys, py::array vals, py::array offsets, int begin_bit,
                     int end_bit) {
  if (keys.dtype().is(py::dtype::of<uint64_t>()))
    return sort_pairs_t<uint64_t>(keys, vals, offsets, begin_bit, end_bit);
  return sort_pairs_t<uint32_t>(keys, vals, offsets, begin_bit, end_bit);
}

py::array_t<int> exclusive_sum(py::array_t<int, py::array::c_style | py::array::forcecast> a,
                               bool short_temp) {
  const int n = static_cast<int>(a.size());
  py::array_t<int> out(n);
  size_t bytes = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, bytes, a.data(), out.mutable_data(), n);
  std::vector<char> temp(bytes);
  if (short_temp) bytes -= 1;
  cudaError_t e = cub::DeviceScan::ExclusiveSum(temp.data(), bytes, a.data(), out.mutable_data(), n);
  if (e != cudaSuccess) throw Error(std::string("ExclusiveSum: ") + cudaGetErrorString(e));
  return out;
}

void bind(py::module_& m) {
  m.def("_emu_launch_config", &launch_config, py::arg("kernel"), py::arg("gx"), py::arg("gy"),
        py::arg("gz"), py::arg("bx"), py::arg("by"), py::arg("bz"), py::arg("smem") = 0,
        py::arg("optin") = -1);
  m.def("_emu_barrier_case", &barrier_case, py::arg("which"), py::arg("timeout_s") = 10.0);
  m.def("_emu_block_sum", &block_sum);
  m.def("_emu_float2half", &float2half);
  m.def("_emu_half2float", &half2float);
  m.def("_emu_sort_pairs", &sort_pairs);
  m.def("_emu_exclusive_sum", &exclusive_sum, py::arg("a"), py::arg("short_temp") = false);
  m.def("_emu_timeout", [] { return emu::timeout(); });
}

}  // namespace
}  // namespace frcnn

// The harness's own checks (tests/test_cuda_emu.py), added to _C_emu by python/module.cpp.
void frcnn_register_emu_selftest(pybind11::module_& m) { frcnn::bind(m); }
