// Large CPU scratch buffers, kept between calls.
//
// The blocked ROIAlign keeps a ring of map rows per thread (roi_align_cpu.cpp): a few MB for
// an FPN's P2, the whole map's channel block when the rois are not in row order. Fresh memory
// of that size costs the kernel's page clearing on every call (clear_page_erms was once the
// largest single item of a multilevel_roi_align forward profile), so buffers of 1 MiB and
// more come from a process-wide pool and go back to it when the
// Scratch is destroyed. The pool keeps at most kMaxCachedBytes of free buffers (the largest
// are released first) and hands out a free buffer only when it is at most twice the size
// asked for. Smaller buffers are plain allocations. Contents are uninitialised.
// frcnn_ops.release_cpu_scratch() (Python) empties the pool.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frcnn {

class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) { reset(bytes); }
  ~Scratch() { release(); }
  Scratch(Scratch&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  Scratch& operator=(Scratch&& o) noexcept;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // Drops the current buffer, then holds one of at least `bytes` (throws std::bad_alloc).
  void reset(size_t bytes);
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void release();
  void* ptr_ = nullptr;
  size_t bytes_ = 0;  // capacity; 0 for an empty or a pooled-size-below-threshold buffer
};

// Frees every cached buffer; returns the bytes freed.
size_t release_cpu_scratch();
// Bytes of free buffers the pool holds now.
size_t cached_cpu_scratch();

}  // namespace frcnn
