#!/usr/bin/python3
"""The aiohttp peer of the HTTP client tests (Debian's /usr/bin/python3 + python3-aiohttp).

Usage: aiohttp_server.py [--lifetime SECONDS]
Listens on 127.0.0.1 on a free port and prints "port=N" once it serves. Exits after --lifetime
seconds or when its parent process goes away, so a crashed test never leaves it running.
"""
import argparse
import asyncio
import json
import os
import zlib

from aiohttp import web


def echo_payload(request, body):
    return {
        "method": request.method,
        "path": request.path,
        "args": dict(request.query),
        "headers": {k: v for k, v in request.headers.items()},
        "body": body.decode("latin-1"),
        "peer_port": request.transport.get_extra_info("peername")[1],
    }


async def echo(request):
    return web.json_response(echo_payload(request, await request.read()))


async def get(request):  # httpbin's /get
    host = request.host
    return web.json_response({
        "args": dict(request.query),
        "headers": {k: v for k, v in request.headers.items()},
        "origin": request.remote,
        "url": f"http://{host}{request.path_qs}",
    })


async def redirect(request):
    """/redirect?status=302&to=/echo&times=1: `times` redirects in a row, then to `to`."""
    status = int(request.query.get("status", "302"))
    times = int(request.query.get("times", "1"))
    to = request.query.get("to", "/echo")
    location = to if times <= 1 else f"/redirect?status={status}&times={times - 1}&to={to}"
    await request.read()
    return web.Response(status=status, headers={"Location": location}, text="redirecting")


async def status(request):
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code}")


async def chunked(request):
    """/chunked?lines=N&delay=ms: N lines sent as separate chunks."""
    lines = int(request.query.get("lines", "5"))
    delay = float(request.query.get("delay", "0")) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(lines):
        await resp.write(f"line {i}\n".encode())
        if delay:
            await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


async def slow_headers(request):
    await asyncio.sleep(float(request.query.get("delay", "1000")) / 1000)
    return web.Response(text="late")


async def slow_body(request):
    """/slow_body?delay=ms: headers at once, the body after `delay`."""
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": "8"})
    await resp.prepare(request)
    await resp.write(b"half")
    await asyncio.sleep(float(request.query.get("delay", "1000")) / 1000)
    await resp.write(b"-end")
    await resp.write_eof()
    return resp


async def disconnect_mid_body(request):
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": "1000"})
    await resp.prepare(request)
    await resp.write(b"x" * 100)
    await asyncio.sleep(0.01)
    request.transport.close()
    return resp


async def cookies(request):
    resp = web.Response(text="cookies")
    resp.headers.add("Set-Cookie", "a=1")
    resp.headers.add("Set-Cookie", "b=2")
    resp.headers.add("X-Mixed-Case", "yes")
    return resp


async def deflate(request):
    raw = request.query.get("raw") == "1"
    data = json.dumps({"compressed": "deflate", "raw": raw}).encode()
    c = zlib.compressobj(wbits=-15 if raw else 15)
    body = c.compress(data) + c.flush()
    return web.Response(body=body, headers={"Content-Encoding": "deflate", "Content-Type": "application/json"})


async def not_json(request):
    return web.Response(text="{not json", content_type=request.query.get("type", "application/json"))


async def drip(request):
    """/drip?chunks=N&delay=ms: N 10-byte pieces, `delay` apart, Content-Length framed."""
    chunks = int(request.query.get("chunks", "5"))
    delay = float(request.query.get("delay", "5")) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": str(10 * chunks)})
    await resp.prepare(request)
    for i in range(chunks):
        await resp.write(f"piece-{i:03d}\n".encode()[:10])
        await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


async def main(lifetime):
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/get", get)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow_headers", slow_headers)
    app.router.add_get("/slow_body", slow_body)
    app.router.add_get("/disconnect_mid_body", disconnect_mid_body)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/deflate", deflate)
    app.router.add_get("/not_json", not_json)
    app.router.add_get("/drip", drip)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"port={port}", flush=True)
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    end = loop.time() + lifetime
    while loop.time() < end and os.getppid() == parent:
        await asyncio.sleep(0.2)
    await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifetime", type=float, default=600)
    asyncio.run(main(ap.parse_args().lifetime))
