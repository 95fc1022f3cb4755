#include "awith/run.hpp"

#include <vector>

namespace awith::detail {

void run_main(EventLoop& loop, TaskBase& main) {
  std::exception_ptr failure;
  try {
    loop.run_until([&] { return main.done(); });
  } catch (...) {
    failure = std::current_exception();
  }
  // asyncio.run's _cancel_all_tasks: cancel what is left and let it finish its cleanup.
  std::vector<TaskBase*> live;
  for (auto* t = loop.first_task(); t; t = t->next_live) live.push_back(t);
  for (auto* t : live) {
    t->add_ref();
    t->cancel();
  }
  try {
    loop.run_until([&] { return loop.first_task() == nullptr; });
  } catch (...) {
    if (!failure) failure = std::current_exception();
    loop.abandon_tasks();
  }
  for (auto* t : live) t->release();
  loop.shutdown_executor();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace awith::detail
