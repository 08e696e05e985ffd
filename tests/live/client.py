"""Real clients of codeexec's live runs, driven by tests/live_root.rs: the `websockets`
package (pinned in .ci/run) for GET /v1/connect, and plain sockets reading NDJSON and SSE.
Each scenario prints one JSON line with what it saw; the Rust test asserts on it.

usage: client.py SCENARIO TCP_ADDR UNIX_SOCKET [MARKER]  (the marker: the program's argument,
for the test to find its processes)"""

import asyncio
import json
import socket
import sys
import time

import websockets

SCENARIO, TCP, UNIX = sys.argv[1], sys.argv[2], sys.argv[3]
MARKER = sys.argv[4] if len(sys.argv) > 4 else "-"
HOST, PORT = TCP.rsplit(":", 1)


def request(body, accept):
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Accept: {accept}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


def read_stream(sock, sse):
    """Events of a chunked NDJSON or SSE body, each with the time it arrived."""
    f = sock.makefile("rb")
    status = f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    events, buf = [], b""
    while True:
        size = int(f.readline().strip(), 16)
        if size == 0:
            break
        buf += f.read(size)
        f.readline()
        sep = b"\n\n" if sse else b"\n"
        while sep in buf:
            item, buf = buf.split(sep, 1)
            if sse:
                lines = dict(l.split(": ", 1) for l in item.decode().split("\n"))
                ev = json.loads(lines["data"])
                assert lines["event"] == ev["type"], lines
            else:
                ev = json.loads(item)
            events.append((time.monotonic(), ev))
    return status.decode().strip(), events


def streamed(sse):
    code = "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')\n"
    accept = "text/event-stream" if sse else "application/x-ndjson"
    sock = socket.create_connection((HOST, int(PORT)))
    sock.sendall(request({"language": "python", "code": code}, accept))
    status, events = read_stream(sock, sse)
    first = next(t for t, e in events if e["type"] == "stdout")
    end = next(t for t, e in events if e["type"] == "result")
    return {
        "status": status,
        "types": [e["type"] if e["type"] != "stage" else f"{e['stage']}:{e['state']}" for _, e in events],
        "stdout": "".join(e["data"] for _, e in events if e["type"] == "stdout"),
        "first_before_end_s": end - first,
        "result": events[-1][1].get("result", {}).get("status"),
    }


async def ws_events(ws, until):
    """Events until `until(event)` is true; returns them."""
    seen = []
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
        seen.append(ev)
        if until(ev):
            return seen


def out(events):
    return "".join(e["data"] for e in events if e["type"] == "stdout")


async def interactive_c():
    code = r"""#include <stdio.h>
int main(void) {
    char name[64];
    printf("name? ");
    while (scanf("%63s", name) == 1) printf("hello %s\nname? ", name);
    printf("bye\n");
    return 0;
}"""
    async with websockets.connect(f"ws://{TCP}/v1/connect") as ws:
        await ws.send(json.dumps({"type": "run", "language": "c", "code": code}))
        seen = await ws_events(ws, lambda e: "name? " in out([e]) if e["type"] == "stdout" else False)
        await ws.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
        seen += await ws_events(ws, lambda e: e["type"] == "stdout" and "name?" in e["data"])
        await ws.send(json.dumps({"type": "stdin", "data": "Grace\n"}))
        await ws.send(json.dumps({"type": "stdin_close"}))
        seen += await ws_events(ws, lambda e: e["type"] in ("result", "error"))
    return {
        "types": [e["type"] if e["type"] != "stage" else f"{e['stage']}:{e['state']}" for e in seen],
        "stdout": out(seen),
        "result": seen[-1].get("result", {}).get("status"),
    }


async def signal():
    code = (
        # one write: print() writes its end apart, and the signal could come between
        "import sys, time\ntry:\n    sys.stdout.write('ready\\n')\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('interrupted')\n    raise SystemExit(3)\n"
    )
    async with websockets.connect(f"ws://{TCP}/v1/connect") as ws:
        await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
        seen = await ws_events(ws, lambda e: e["type"] == "stdout" and "ready" in e["data"])
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        seen += await ws_events(ws, lambda e: e["type"] in ("result", "error"))
    result = seen[-1].get("result", {})
    return {"stdout": out(seen), "result": result.get("status"), "exit_code": result.get("exit_code")}


async def refusals():
    """A bad first message, then stdin over the limit (the daemon's body maximum)."""
    async with websockets.connect(f"ws://{TCP}/v1/connect") as ws:
        await ws.send(json.dumps({"type": "stdin", "data": "x"}))
        bad_first = json.loads(await ws.recv())
    async with websockets.connect(f"ws://{TCP}/v1/connect", max_size=None) as ws:
        code = "import sys\nprint('ready', flush=True)\nprint(len(sys.stdin.read()))\n"
        await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
        await ws_events(ws, lambda e: e["type"] == "stdout" and "ready" in e["data"])
        # the daemon's limit is 2 MiB (CODEEXEC_SERVER_MAX_BODY_KB): the second is refused
        await ws.send(json.dumps({"type": "stdin", "data": "y" * (3 << 19)}))
        await ws.send(json.dumps({"type": "stdin", "data": "y" * (3 << 19)}))
        refused = await ws_events(ws, lambda e: e["type"] == "error")
        await ws.send(json.dumps({"type": "stdin", "data": "abc"}))
        await ws.send(json.dumps({"type": "stdin_close"}))
        seen = await ws_events(ws, lambda e: e["type"] in ("result",))
    return {"bad_first": bad_first, "refused": refused[-1], "stdout": out(seen)}


async def hang_up():
    """Closes the socket while the program runs: the test then looks for its processes."""
    code = "import time\nprint('up')\ntime.sleep(120)\n"
    ws = await websockets.connect(f"ws://{TCP}/v1/connect")
    await ws.send(json.dumps({"type": "run", "language": "python", "code": code, "args": [MARKER], "limits": {"wall_time_ms": 120000}}))
    await ws_events(ws, lambda e: e["type"] == "stdout" and "up" in e["data"])
    ws.transport.abort()
    return {"hung_up": True}


def stalled():
    """Asks for a long stream on the Unix socket and then reads nothing."""
    code = "import sys, time\nfor i in range(2000):\n    sys.stdout.write('x' * 8191 + '\\n')\n    time.sleep(0.05)\n"
    body = {"language": "python", "code": code, "args": [MARKER], "limits": {"wall_time_ms": 120000, "output_kb": 16384}}
    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(UNIX)
    sock.sendall(request(body, "application/x-ndjson"))
    time.sleep(40)
    sock.close()
    return {"stalled": True}


def many():
    """1000 WebSockets open at once, each one answered (a bad first message)."""

    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run():
        socks = [await websockets.connect(f"ws://{TCP}/v1/connect") for _ in range(1000)]
        answers = 0
        for ws in socks[::100]:
            await ws.send("{}")
            if json.loads(await ws.recv())["type"] == "error":
                answers += 1
        for ws in socks:
            await ws.close()
        return {"opened": len(socks), "answered": answers}

    return asyncio.run(run())


SCENARIOS = {
    "ndjson": lambda: streamed(False),
    "sse": lambda: streamed(True),
    "interactive_c": lambda: asyncio.run(interactive_c()),
    "signal": lambda: asyncio.run(signal()),
    "refusals": lambda: asyncio.run(refusals()),
    "hang_up": lambda: asyncio.run(hang_up()),
    "stalled": stalled,
    "many": many,
}

print(json.dumps(SCENARIOS[SCENARIO]()))
