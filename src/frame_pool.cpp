#include <cstddef>
#include <new>

#include "awith/task.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define AWITH_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AWITH_POOL_DISABLED 1
#endif
#endif

namespace awith::detail {

#ifdef AWITH_POOL_DISABLED

void* FramePool::allocate(std::size_t size) { return ::operator new(size); }
void FramePool::deallocate(void* p, std::size_t) noexcept { ::operator delete(p); }

#else

namespace {
constexpr std::size_t kGranule = 16;
constexpr std::size_t kClasses = 128;  // blocks up to 2 KiB are pooled
constexpr unsigned kMaxPerClass = 4096;

struct FreeBlock {
  FreeBlock* next;
};

// Plain data so that the fast path is a direct TLS access without an initialisation guard.
struct PoolData {
  FreeBlock* heads[kClasses];
  unsigned counts[kClasses];
};
thread_local PoolData tl_pool;

// Returns the pooled blocks to the heap when the thread ends; touched only on the slow path.
struct PoolReaper {
  bool armed = false;
  ~PoolReaper() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (FreeBlock* b = tl_pool.heads[c]) {
        tl_pool.heads[c] = b->next;
        ::operator delete(b);
      }
      tl_pool.counts[c] = 0;
    }
  }
};
thread_local PoolReaper tl_reaper;
}  // namespace

void* FramePool::allocate(std::size_t size) {
  std::size_t c = (size - 1) / kGranule;
  if (c >= kClasses) return ::operator new(size);
  if (FreeBlock* b = tl_pool.heads[c]) {
    tl_pool.heads[c] = b->next;
    --tl_pool.counts[c];
    return b;
  }
  tl_reaper.armed = true;
  return ::operator new((c + 1) * kGranule);
}

void FramePool::deallocate(void* p, std::size_t size) noexcept {
  std::size_t c = (size - 1) / kGranule;
  if (c >= kClasses || tl_pool.counts[c] >= kMaxPerClass) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = tl_pool.heads[c];
  tl_pool.heads[c] = b;
  ++tl_pool.counts[c];
}

#endif

}  // namespace awith::detail
