// Uses the installed headers and library: a scheduled task, a nested await, a thread hop.
#include <awith/awith.hpp>

#include <cstdio>

awith::Task<int> twice(int x) {
  co_await awith::sleep(0);
  co_return 2 * x;
}

awith::Task<int> amain() {
  auto child = awith::create_task(twice(20));
  int b = co_await twice(1);
  int a = co_await child;
  int c = co_await awith::to_thread([] { return 0; });
  co_return a + b + c;
}

int main() {
  int answer = awith::run(amain());
  std::printf("consumer: %d\n", answer);
  return answer == 42 ? 0 : 1;
}
