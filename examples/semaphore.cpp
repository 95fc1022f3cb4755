// Mirrors the asyncio Semaphore example: 50 tasks share a Semaphore(10); each holds it for 0.1 s.
// In Python:
//
//     async def worker(sem):
//         global count
//         async with sem:
//             await asyncio.sleep(0.1)
//             count += 1
//
//     async def main():
//         sem = asyncio.Semaphore(10)
//         await asyncio.gather(*(worker(sem) for _ in range(50)))
//         print(f"count: {count}")
//
// Ten at a time, five rounds: about 0.5 s.
#include <awith/awith.hpp>

#include <cstdio>
#include <vector>

using awith::Semaphore;
using awith::Task;

int main() {
  int count = 0;
  awith::run([&]() -> Task<void> {
    Semaphore sem(10);
    auto worker = [&]() -> Task<void> {
      co_await awith::async_with(sem, [&]() -> Task<void> {
        co_await awith::sleep(0.1);
        ++count;
      });
    };
    std::vector<Task<void>> workers;
    for (int i = 0; i < 50; ++i) workers.push_back(worker());
    co_await awith::gather(workers);
  }());
  std::printf("count: %d\n", count);
}
