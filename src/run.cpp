#include "awith/run.hpp"

#include <vector>

#include "run_interrupt.hpp"

namespace awith::detail {

void run_main(EventLoop& loop, TaskBase& main) {
  RunInterrupt interrupt(loop, main);
  std::exception_ptr failure;
  try {
    loop.run_until([&] { return main.done(); });
  } catch (...) {
    failure = std::current_exception();
  }
  const unsigned interrupts_during_main = interrupt.count();
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
  end_signal_handling(loop);
  loop.shutdown_executor();
  if (failure) std::rethrow_exception(failure);
  bool interrupted_after_main = interrupt.count() > interrupts_during_main;
  if (interrupted_after_main || (interrupts_during_main > 0 && main.cancelled())) {
    main.mark_retrieved();
    throw KeyboardInterrupt();
  }
}

}  // namespace awith::detail
