#include "awith/io_wait.hpp"

#include <utility>

namespace awith {

void FdWatch::attach(int fd) {
  detach();
  auto& loop = EventLoop::running();
  watch_.fd = fd;
  watch_.owner = this;
  watch_.readable = watch_.writable = watch_.hangup = false;
  watch_.on_event = &on_event;
  loop.add_watch(&watch_);
  loop_ = &loop;
}

void FdWatch::detach() noexcept {
  if (!loop_) return;
  loop_->remove_watch(&watch_);
  loop_ = nullptr;
  // Waiters still registered are not woken: their owner is being torn down; the awaitables
  // unregister themselves when their frames end.
  if (reader_) reader_->watch = nullptr;
  if (writer_) writer_->watch = nullptr;
  reader_ = writer_ = nullptr;
}

void FdWatch::on_event(detail::IoWatch* w) {
  auto* self = static_cast<Watch*>(w)->owner;
  if (self->reader_ && (w->readable || w->hangup)) std::exchange(self->reader_, nullptr)->wake();
  if (self->writer_ && (w->writable || w->hangup)) std::exchange(self->writer_, nullptr)->wake();
}

namespace detail {

FdWait::~FdWait() {
  if (!watch) return;
  if (for_write ? watch->writer_ == this : watch->reader_ == this) (for_write ? watch->writer_ : watch->reader_) = nullptr;
}

bool FdWait::await_ready() const noexcept {
  return !watch || (for_write ? watch->writable() : watch->readable()) || watch->hangup();
}

bool FdWait::await_suspend(std::coroutine_handle<> h) {
  auto*& slot = for_write ? watch->writer_ : watch->reader_;
  if (slot) throw RuntimeError("two tasks wait for the same direction of one fd");
  if (!begin(h)) return false;
  slot = this;
  counted = true;
  ++task->loop().pending_io_waits;
  return true;
}

void FdWait::await_resume() {
  if (counted) --task->loop().pending_io_waits;
  counted = false;
  end();
}

bool FdWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<FdWait*>(w);
  if (self->watch) (self->for_write ? self->watch->writer_ : self->watch->reader_) = nullptr;
  return true;
}

}  // namespace detail
}  // namespace awith
