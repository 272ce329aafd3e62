"""Peers that misbehave, for integration/hardening.sh: a raw HTTP backend with broken answers, a
WebSocket echo server and client, and hostile clients (slowloris, withheld bodies, non-reading clients,
stalled TLS handshakes, connection floods). Every loop is bounded in count and time.

Usage: python3 hostile.py COMMAND ARGS...  (see the functions below; each prints one JSON line)
"""

import asyncio
import json
import socket
import sys
import time


# -- Backends ---------------------------------------------------------------------------------------


async def raw_backend(port: int) -> None:
    """An HTTP/1.1 server whose answers depend on the path; counts requests per path at /count."""
    counts: dict[str, int] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                path = line.split(" ")[1]
                counts[path] = counts.get(path, 0) + 1
                length = 0
                for header in head.split(b"\r\n")[1:]:
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if path == "/cl-te":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                elif path == "/switch":
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n")
                elif path == "/early":
                    writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfinal\n")
                elif path == "/echo-head":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(head), head))
                elif path == "/count":
                    body = json.dumps(counts).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                elif path.startswith("/big"):
                    size = 32 * 1024 * 1024
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                    chunk = b"x" * 65536
                    for _ in range(size // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def ws_backend(port: int) -> None:
    """A WebSocket server that echoes every message with a prefix."""
    import websockets.asyncio.server as ws_server

    async def echo(connection) -> None:
        async for message in connection:
            await connection.send(f"echo:{message}")

    async with ws_server.serve(echo, "127.0.0.1", port):
        await asyncio.Future()


# -- Clients ----------------------------------------------------------------------------------------


async def slowloris(port: int, clients: int, interval: float, duration: float) -> None:
    """Opens CLIENTS connections, each sending one header line every INTERVAL seconds for at most DURATION
    seconds. Reports how many the proxy closed, when, and how many got a 408."""
    started = time.monotonic()
    closed_at: list[float] = []
    got_408 = 0

    async def one(index: int) -> None:
        nonlocal got_408
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.write(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        try:
            line = 0
            while time.monotonic() - started < duration:
                try:
                    data = await asyncio.wait_for(reader.read(1024), timeout=interval)
                except asyncio.TimeoutError:
                    data = None
                if data is not None:
                    # An answer or the end: the proxy is done with this client; read to the end.
                    if data.startswith(b"HTTP/1.1 408"):
                        got_408 += 1
                    while data:
                        data = await asyncio.wait_for(reader.read(1024), timeout=interval)
                    closed_at.append(time.monotonic() - started)
                    return
                line += 1
                writer.write(b"X-Slow-%d: %d\r\n" % (line, index))
                await writer.drain()
        except (ConnectionError, asyncio.TimeoutError):
            closed_at.append(time.monotonic() - started)
        finally:
            writer.close()

    await asyncio.gather(*(one(index) for index in range(clients)))
    closed_at.sort()
    print(json.dumps({
        "clients": clients,
        "closed": len(closed_at),
        "got408": got_408,
        "firstClose": round(closed_at[0], 2) if closed_at else None,
        "lastClose": round(closed_at[-1], 2) if closed_at else None,
    }))


async def withheld_body(port: int, clients: int, limit: float) -> None:
    """CLIENTS concurrent POSTs announcing a 100-byte body that never comes. Reports the status lines and
    how long the proxy took to answer."""
    started = time.monotonic()

    async def one() -> tuple[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(4096), timeout=limit)
            return data.split(b"\r\n", 1)[0].decode(), round(time.monotonic() - started, 2)
        except asyncio.TimeoutError:
            return "no answer", round(time.monotonic() - started, 2)
        finally:
            writer.close()

    results = await asyncio.gather(*(one() for _ in range(clients)))
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    print(json.dumps({"statuses": statuses, "slowest": max(seconds for _, seconds in results)}))


def not_reading(port: int, path: str, wait: float, limit: float) -> None:
    """Asks for a large response, reads nothing for WAIT seconds, then drains: reports the bytes it got
    before the proxy closed (fewer than the body means the proxy gave up on it)."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    time.sleep(wait)
    connection.settimeout(limit)
    received = 0
    closed = False
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            data = connection.recv(1 << 20)
            if not data:
                closed = True
                break
            received += len(data)
    except (socket.timeout, ConnectionError):
        closed = True
    connection.close()
    print(json.dumps({"received": received, "closed": closed}))


def stalled_tls(port: int, limit: float) -> None:
    """Connects to a TLS listener and sends half a ClientHello: reports whether and when the proxy closed."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    connection.settimeout(limit)
    started = time.monotonic()
    closed = False
    try:
        while time.monotonic() - started < limit:
            if not connection.recv(4096):
                closed = True
                break
    except socket.timeout:
        pass
    except ConnectionError:
        closed = True
    print(json.dumps({"closed": closed, "after": round(time.monotonic() - started, 2)}))
    connection.close()


def flood(port: int, count: int, hold: float) -> None:
    """Opens COUNT connections and holds them HOLD seconds: reports how many the proxy closed at once."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connections.append(connection)
    time.sleep(hold)
    closed = 0
    for connection in connections:
        connection.setblocking(False)
        try:
            if connection.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except ConnectionError:
            closed += 1
    # The ones still open must still be served.
    served = 0
    for connection in connections:
        connection.setblocking(True)
        connection.settimeout(5)
        try:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            if connection.recv(64).startswith(b"HTTP/1.1 200"):
                served += 1
        except (OSError, socket.timeout):
            pass
        connection.close()
    print(json.dumps({"opened": count, "closedAtOnce": closed, "served": served}))


def idle_tcp(port: int, limit: float) -> None:
    """Opens a TCP connection and sends nothing: reports whether and when the proxy closed it."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(limit)
    started = time.monotonic()
    closed = False
    try:
        closed = connection.recv(1) == b""
    except socket.timeout:
        pass
    except ConnectionError:
        closed = True
    print(json.dumps({"closed": closed, "after": round(time.monotonic() - started, 2)}))
    connection.close()


async def ws_client(port: int, messages: int) -> None:
    """Opens a WebSocket through the proxy, sends MESSAGES messages, reports the echoes."""
    import websockets.asyncio.client as ws_client_module

    async with ws_client_module.connect(f"ws://127.0.0.1:{port}/chat", open_timeout=5) as connection:
        echoed = 0
        for index in range(messages):
            await connection.send(f"m{index}")
            reply = await asyncio.wait_for(connection.recv(), timeout=5)
            if reply == f"echo:m{index}":
                echoed += 1
    print(json.dumps({"sent": messages, "echoed": echoed}))


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "raw-backend":
        asyncio.run(raw_backend(int(args[0])))
    elif command == "ws-backend":
        asyncio.run(ws_backend(int(args[0])))
    elif command == "slowloris":
        asyncio.run(slowloris(int(args[0]), int(args[1]), float(args[2]), float(args[3])))
    elif command == "withheld-body":
        asyncio.run(withheld_body(int(args[0]), int(args[1]), float(args[2])))
    elif command == "not-reading":
        not_reading(int(args[0]), args[1], float(args[2]), float(args[3]))
    elif command == "stalled-tls":
        stalled_tls(int(args[0]), float(args[1]))
    elif command == "flood":
        flood(int(args[0]), int(args[1]), float(args[2]))
    elif command == "idle-tcp":
        idle_tcp(int(args[0]), float(args[1]))
    elif command == "ws-client":
        asyncio.run(ws_client(int(args[0]), int(args[1])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
