// The scratch pool (policy: scratch.h).
#include "common/scratch.h"

#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>

#include "common/hugepages.h"

namespace frcnn {

namespace {
constexpr size_t kPooledFrom = size_t(1) << 20;
constexpr size_t kMaxCachedBytes = size_t(512) << 20;
constexpr size_t kAlign = 64;

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // capacity -> buffer
  size_t cached = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: Scratch may be released during exit
  return *p;
}

void* allocate(size_t bytes) {
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr) throw std::bad_alloc();
  advise_huge_pages(p, rounded);
  return p;
}
}  // namespace

Scratch& Scratch::operator=(Scratch&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Scratch::reset(size_t bytes) {
  release();
  if (bytes == 0) return;
  if (bytes < kPooledFrom) {
    ptr_ = allocate(bytes);
    bytes_ = 0;
    return;
  }
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.free.lower_bound(bytes);
    if (it != p.free.end() && it->first <= 2 * bytes) {
      ptr_ = it->second;
      bytes_ = it->first;
      p.cached -= it->first;
      p.free.erase(it);
      return;
    }
  }
  ptr_ = allocate(bytes);
  bytes_ = bytes;
}

void Scratch::release() {
  if (ptr_ == nullptr) return;
  if (bytes_ == 0) {
    std::free(ptr_);
  } else {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    p.free.emplace(bytes_, ptr_);
    p.cached += bytes_;
    while (p.cached > kMaxCachedBytes) {  // the largest go first
      auto last = std::prev(p.free.end());
      p.cached -= last->first;
      std::free(last->second);
      p.free.erase(last);
    }
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

size_t release_cpu_scratch() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  const size_t freed = p.cached;
  for (auto& kv : p.free) std::free(kv.second);
  p.free.clear();
  p.cached = 0;
  return freed;
}

size_t cached_cpu_scratch() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.cached;
}

}  // namespace frcnn
