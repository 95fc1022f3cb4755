#include <cstddef>
#include <new>

#include "awith/task.hpp"

namespace awith::detail {

thread_local constinit FramePool::Lists FramePool::lists{};

#if AWITH_FRAME_POOL

namespace {
// Returns the pooled blocks to the heap when the thread ends; touched only on the slow path.
struct PoolReaper {
  bool armed = false;
  ~PoolReaper() {
    auto& lists = FramePool::lists;
    for (std::size_t c = 0; c < FramePool::kClasses; ++c) {
      while (FramePool::FreeBlock* b = lists.heads[c]) {
        lists.heads[c] = b->next;
        ::operator delete(b);
      }
      lists.counts[c] = 0;
    }
  }
};
thread_local PoolReaper tl_reaper;
}  // namespace

void* FramePool::allocate_slow(std::size_t size) {
  std::size_t c = (size - 1) / kGranule;
  if (c >= kClasses) return ::operator new(size);
  tl_reaper.armed = true;
  return ::operator new((c + 1) * kGranule);
}

#else

void* FramePool::allocate_slow(std::size_t size) { return ::operator new(size); }

#endif

void FramePool::deallocate_slow(void* p, std::size_t) noexcept { ::operator delete(p); }

}  // namespace awith::detail
