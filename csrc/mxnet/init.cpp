// Library entry points: MXNet's initialize() and a few C functions read by frcnn_ops._lib
// through ctypes (lib_api version, build facts, thread count).
#include <cstdio>

#include "common/parallel.h"
#include "common/scratch.h"
#include "mxnet/glue.h"

#ifndef FRCNN_VERSION
#define FRCNN_VERSION "0.0.0"
#endif
#ifndef FRCNN_CUDA_ARCHS
#define FRCNN_CUDA_ARCHS ""
#endif

mxnet::ext::MXReturnValue initialize(int version) {
  // lib_api version 11 is the one of MXNet 1.9.x.
  if (version < 10900 || version >= 20000) {
    MX_ERROR_MSG << "frcnn_ops was built for MXNet 1.9.x (lib_api " << MX_LIBRARY_VERSION
                 << ") but was loaded by MXNet " << version / 10000 << "." << (version / 100) % 100
                 << "." << version % 100 << "; rebuild frcnn_ops against this MXNet";
    return mxnet::ext::MX_FAIL;
  }
  return mxnet::ext::MX_SUCCESS;
}

extern "C" {
int frcnn_lib_api_version() { return MX_LIBRARY_VERSION; }
int frcnn_has_cuda() {
#ifdef FRCNN_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}
const char* frcnn_version() { return FRCNN_VERSION; }
const char* frcnn_cuda_archs() { return FRCNN_CUDA_ARCHS; }
int frcnn_get_num_threads() { return frcnn::get_num_threads(); }
void frcnn_set_num_threads(int n) { frcnn::set_num_threads(n); }
size_t frcnn_release_cpu_scratch() { return frcnn::release_cpu_scratch(); }
}

// ---- Error messages --------------------------------------------------------------------
// lib_api.cc keeps every message ever reported in one unsynchronised list and MXNet prints
// the whole list on each failure. CMake compiles lib_api.cc with its _msgSize/_msgGet
// renamed, and these replacements hand MXNet only the message of the call that failed on
// this thread (MXNet reads it right after the failing call, on the same thread).
namespace {
thread_local std::string t_last_error;
}

namespace frcnn {
namespace mxglue {
void report_error(const std::string& msg) { t_last_error = msg; }
}  // namespace mxglue
}  // namespace frcnn

extern "C" {
MX_INT_RET _msgSize() { return t_last_error.empty() ? 0 : 1; }
MX_VOID_RET _msgGet(int idx, const char** msg) {
  *msg = t_last_error.c_str();
}
}
