#!/usr/bin/python3
"""A local stand-in for httpbin.org's /get (Debian's /usr/bin/python3 + python3-aiohttp), so the
tour and the tests need no internet.

Usage: httpbin.py PORT [--lifetime SECONDS]
Serves GET /get on 127.0.0.1:PORT, answering like httpbin: {"args", "headers", "origin", "url"}.
Exits after --lifetime seconds (default 120).
"""
import argparse
import asyncio

from aiohttp import web


async def get(request):
    return web.json_response({
        "args": dict(request.query),
        "headers": {k: v for k, v in request.headers.items()},
        "origin": request.remote,
        "url": str(request.url),
    })


async def main(port, lifetime):
    app = web.Application()
    app.router.add_get("/get", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.sleep(lifetime)
    await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--lifetime", type=float, default=120)
    a = ap.parse_args()
    asyncio.run(main(a.port, a.lifetime))
