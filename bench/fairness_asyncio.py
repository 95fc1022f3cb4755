"""The asyncio side of bench/fairness.cpp: the same probes, for a same-run comparison.

    fairness_asyncio.py queue_timeout [ITEMS]
    fairness_asyncio.py busy_server N SECONDS
"""
import asyncio
import sys
import time


async def queue_timeout(items: int) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    for _ in range(items):
        q.put_nowait(1)
    taken = 0
    start = time.perf_counter()
    try:
        async with asyncio.timeout(0.010):
            while True:
                taken += await q.get()
    except TimeoutError:
        pass
    late_ms = (time.perf_counter() - start) * 1000 - 10.0
    print(f"queue_timeout items={items} taken={taken} late_ms={late_ms:.2f}")


def spin_one_microsecond() -> None:
    until = time.perf_counter() + 1e-6
    while time.perf_counter() < until:
        pass


async def busy_server(tasks: int, seconds: float) -> None:
    stop = False

    async def busy() -> None:
        while not stop:
            spin_one_microsecond()
            await asyncio.sleep(0)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while b := await reader.read(1):
            writer.write(b)
            await writer.drain()
        writer.close()

    workers = [asyncio.create_task(busy()) for _ in range(tasks)]
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*workers)
    server.close()
    await server.wait_closed()


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "queue_timeout":
        asyncio.run(queue_timeout(int(sys.argv[2]) if len(sys.argv) > 2 else 20_000_000))
    elif mode == "busy_server" and len(sys.argv) > 3:
        asyncio.run(busy_server(int(sys.argv[2]), float(sys.argv[3])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
