"""gRPC peers for integration/grpc.sh: a grpcio server (one per zone) and the client that checks the proxy.

No code generation: generic handlers with raw-bytes messages.
  server PORT NAME MARKER_DIR        serve /zw.Test/* and grpc.health.v1.Health until killed
  client PROXY ADMIN MARKER_DIR PID_A PID_PROXY   run the checks, one "ok ..." or "FAIL ..." line each
"""
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from concurrent import futures

import grpc

BIG = 32 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


def serve(port, name, markers, max_streams=0, cert=None, key=None):
    def unary(request, context):
        return name.encode() if request == b"whoami" else request

    def server_stream(request, context):
        count = int(request or b"3")
        for i in range(count):
            yield b"%s:%d" % (name.encode(), i)
            if count > 10:
                time.sleep(0.1)

    def client_stream(requests, context):
        count = total = 0
        for message in requests:
            count += 1
            total += len(message)
        return b"%d:%d" % (count, total)

    def bidi(requests, context):
        for message in requests:
            yield message.upper()

    def slow(request, context):
        # Up to 5 s; a call that goes away first leaves a marker named by its request.
        for _ in range(100):
            if not context.is_active():
                open(os.path.join(markers, request.decode() + ".cancelled"), "w").close()
                return b""
            time.sleep(0.05)
        return b"late"

    def firehose(request, context):
        chunk = b"f" * (1024 * 1024)
        for _ in range(int(request)):
            yield chunk

    def stop(request, context):
        # GOAWAY to every client, `request` ms of grace for the calls in flight; this answer goes out first.
        threading.Timer(0.1, lambda: server.stop(int(request) / 1000)).start()
        return b"stopping"

    def sleep(request, context):
        time.sleep(int(request) / 1000)
        return name.encode()

    # The standard health service (grpcio-health-checking, when installed); SetHealth takes b"SERVICE=STATUS"
    # ("" is the server's overall health, STATUS a ServingStatus name such as NOT_SERVING).
    try:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    except ImportError:
        health = None
    health_servicer = health.HealthServicer() if health else None
    if health_servicer:
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    def set_health(request, context):
        service, status = request.decode().split("=", 1)
        health_servicer.set(service, health_pb2.HealthCheckResponse.ServingStatus.Value(status))
        return b"ok"

    handler = grpc.method_handlers_generic_handler(
        "zw.Test",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Firehose": grpc.unary_stream_rpc_method_handler(firehose),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Stop": grpc.unary_unary_rpc_method_handler(stop),
            "SetHealth": grpc.unary_unary_rpc_method_handler(set_health),
        },
    )
    options = OPTIONS + ([("grpc.max_concurrent_streams", max_streams)] if max_streams else [])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options)
    server.add_generic_rpc_handlers((handler,))
    if health_servicer:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if cert:
        with open(key, "rb") as k, open(cert, "rb") as c:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def silent(port):
    """An HTTP/2 server that completes the handshake and then never answers a stream."""
    import h2.config
    import h2.connection

    listener = socket.create_server(("127.0.0.1", port))

    def serve_one(sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return
            conn.receive_data(data)
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)

    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve_one, args=(sock,), daemon=True).start()


def report(ok, description, detail=""):
    print(("ok   " if ok else "FAIL ") + description + ("" if ok or not detail else f": {detail}"), flush=True)


def metric(admin, name, **labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def raw_h2(port):
    """A raw HTTP/2 connection (the h2 library), for what grpcio cannot do on purpose."""
    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def pump(sock, conn, until, seconds):
    """Reads events until `until(event)` is true or `seconds` pass; returns (matching event, all events)."""
    seen = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return None, seen
        if not data:
            return None, seen
        for event in conn.receive_data(data):
            seen.append(event)
            if until(event):
                return event, seen
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                return None, seen
    return None, seen


def read_until_closed(sock, seconds):
    """Everything the peer sends within `seconds`, and whether it closed the connection by then."""
    received = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def frame_types(data):
    """The types of the HTTP/2 frames in `data` (from a connection's start, after any preface)."""
    kinds = []
    offset = 0
    while offset + 9 <= len(data):
        kinds.append(data[offset + 3])
        offset += 9 + int.from_bytes(data[offset:offset + 3], "big")
    return kinds


def grpc_request_headers(path, extra=()):
    return [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "zoneward"),
            ("content-type", "application/grpc"), ("te", "trailers"), *extra]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def upstream_connections(port):
    import subprocess

    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=5).stdout
    return len([line for line in out.splitlines() if line.strip()])


def chaos(proxy, seconds, seed):
    """Raw connections doing random things (streams opened, data, resets with any code, pings, window updates,
    settings, garbage) for `seconds`. Returns the number of connections."""
    import random

    import h2.exceptions
    import h2.settings

    rng = random.Random(seed)
    paths = ["/zw.Test/Unary", "/zw.Test/Bidi", "/zw.Test/ClientStream", "/zw.Test/ServerStream", "/nope"]
    end = time.time() + seconds
    count = 0
    while time.time() < end:
        count += 1
        try:
            sock, conn = raw_h2(proxy)
            for _ in range(rng.randint(1, 40)):
                op = rng.random()
                try:
                    open_streams = [sid for sid in conn.streams if sid % 2 == 1] or [1]
                    if op < 0.4:
                        sid = conn.get_next_available_stream_id()
                        extra = [("grpc-timeout", rng.choice(["1m", "50m", "bad", "99999999H"]))] if rng.random() < 0.3 else []
                        conn.send_headers(sid, grpc_request_headers(rng.choice(paths), extra), end_stream=rng.random() < 0.3)
                    elif op < 0.65:
                        conn.send_data(rng.choice(open_streams), os.urandom(rng.randint(0, 5000)),
                                       end_stream=rng.random() < 0.5)
                    elif op < 0.8:
                        conn.reset_stream(rng.choice(open_streams), error_code=rng.randint(0, 13))
                    elif op < 0.87:
                        conn.ping(os.urandom(8))
                    elif op < 0.94:
                        conn.increment_flow_control_window(rng.randint(1, 65535))
                    else:
                        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: rng.randint(0, 1 << 20)})
                except (h2.exceptions.H2Error, ValueError, KeyError):
                    pass
                sock.sendall(conn.data_to_send())
            if rng.random() < 0.2:
                sock.sendall(os.urandom(rng.randint(1, 300)))
            sock.settimeout(0.05)
            try:
                sock.recv(65536)
            except OSError:
                pass
            sock.close()
        except OSError:
            pass
    return count


def client(proxy, admin, markers, pid_a, pid_proxy, port_b):
    import h2.events
    import h2.settings

    channel = grpc.insecure_channel(f"127.0.0.1:{proxy}", options=OPTIONS)
    unary = channel.unary_unary("/zw.Test/Unary")
    server_stream = channel.unary_stream("/zw.Test/ServerStream")
    client_stream = channel.stream_unary("/zw.Test/ClientStream")
    bidi = channel.stream_stream("/zw.Test/Bidi")
    slow = channel.unary_unary("/zw.Test/Slow")

    names = [unary(b"whoami", timeout=5) for _ in range(20)]
    report(names == [b"zone-a"] * 20, "20 unary calls all served in the local zone (zone-a has capacity)", names)
    got = list(server_stream(b"5", timeout=5))
    report(got == [b"zone-a:%d" % i for i in range(5)], "server streaming: 5 messages", got)
    answer = client_stream(iter([b"x" * 100] * 10), timeout=5)
    report(answer == b"10:1000", "client streaming: 10 messages counted upstream", answer)
    got = list(bidi(iter([b"a", b"b", b"c", b"d", b"e"]), timeout=5))
    report(got == [b"A", b"B", b"C", b"D", b"E"], "bidi streaming: 5 messages each way", got)
    big = os.urandom(16 * 1024 * 1024)
    started = time.time()
    echoed = unary(big, timeout=30)
    report(echoed == big, f"a 16 MiB message echoed intact ({time.time() - started:.1f} s)")

    future = slow.future(b"cancel-me", timeout=10)
    time.sleep(0.5)
    future.cancel()
    marker = os.path.join(markers, "cancel-me.cancelled")
    for _ in range(60):
        if os.path.exists(marker):
            break
        time.sleep(0.05)
    report(os.path.exists(marker), "a cancelled call is cancelled upstream (the server saw it go)")

    try:
        slow(b"client-deadline", timeout=1.0)
        report(False, "a call past its deadline fails DEADLINE_EXCEEDED", "it succeeded")
    except grpc.RpcError as error:
        report(error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "a call past its deadline fails DEADLINE_EXCEEDED",
               error.code())

    # The proxy's own deadline from grpc-timeout: a raw client that never gives up by itself.
    sock, conn = raw_h2(proxy)
    conn.send_headers(1, grpc_request_headers("/zw.Test/Slow", [("grpc-timeout", "400m")]))
    conn.send_data(1, b"\x00\x00\x00\x00\x0cproxy-timer1", end_stream=True)
    sock.sendall(conn.data_to_send())
    started = time.time()
    event, seen = pump(sock, conn, lambda e: isinstance(e, h2.events.StreamEnded), 4)
    status = None
    for e in seen:
        if isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
            status = dict(e.headers).get("grpc-status", status)
    elapsed = time.time() - started
    report(event is not None and status == "4" and elapsed < 2,
           f"grpc-timeout 400m: the proxy ends the call with grpc-status 4 after {elapsed:.2f} s", status)
    marker = os.path.join(markers, "proxy-timer1.cancelled")
    for _ in range(40):
        if os.path.exists(marker):
            break
        time.sleep(0.05)
    report(os.path.exists(marker), "the expired call is cancelled upstream")
    settings = [e for e in seen if isinstance(e, h2.events.RemoteSettingsChanged)]
    advertised = {}
    for e in settings:
        advertised.update({k: v.new_value for k, v in e.changed_settings.items()})
    report(advertised.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == 100
           and advertised.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE) == 65536,
           "SETTINGS advertise 100 concurrent streams and a 64 KiB header list", advertised)
    sock.close()

    # Rapid reset (CVE-2023-44487): streams opened and reset at once, far past 100 a second. The answer is
    # read as raw frames (the h2 library refuses frames after GOAWAY, which is what is looked for).
    sock, conn = raw_h2(proxy)
    try:
        for i in range(400):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, grpc_request_headers("/zw.Test/Slow"))
            conn.reset_stream(stream)
        sock.sendall(conn.data_to_send())
    except OSError:
        pass
    received = b""
    deadline = time.time() + 5
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    closed = time.time() < deadline
    goaway = None
    offset = 0
    while offset + 9 <= len(received):
        length = int.from_bytes(received[offset:offset + 3], "big")
        kind = received[offset + 3]
        if kind == 7 and offset + 9 + 8 <= len(received):
            goaway = int.from_bytes(received[offset + 13:offset + 17], "big")
        offset += 9 + length
    report(goaway == 11 and closed, "rapid reset: GOAWAY ENHANCE_YOUR_CALM, and the connection is closed",
           (goaway, closed))
    closures = metric(admin, "zoneward_http2_connections_closed_total", service="grpc", reason="rapid-reset")
    report(closures == 1, f"/metrics: the closure is counted (reason rapid-reset: {closures:.0f})")
    sock.close()

    # A 70 KiB header list (over the advertised 64 KiB) is refused; the proxy keeps serving.
    sock, conn = raw_h2(proxy)
    conn.local_settings.max_header_list_size = 1 << 20
    conn.send_headers(1, grpc_request_headers("/zw.Test/Unary", [("x-big", "b" * 70000)]), end_stream=True)
    sock.sendall(conn.data_to_send())
    answer, _ = read_until_closed(sock, 3)
    kinds = frame_types(answer)
    report((3 in kinds or 7 in kinds) and b"grpc-status" not in answer,
           "a 70 KiB header list is refused (RST_STREAM or GOAWAY)", kinds)
    sock.close()

    # Garbage after the preface: the connection is closed, nothing else is affected.
    sock = socket.create_connection(("127.0.0.1", proxy), timeout=5)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(4096))
    _, closed = read_until_closed(sock, 5)
    sock.close()
    report(closed and unary(b"whoami", timeout=5) == b"zone-a",
           "garbage after the preface closes that connection; the proxy keeps serving")

    # Backpressure: 256 MiB streamed to a client that reads 1 MiB per 15 ms; the proxy holds only windows.
    firehose = channel.unary_stream("/zw.Test/Firehose")
    baseline = peak = rss_mib(pid_proxy)
    count = 0
    started = time.time()
    for _ in firehose(b"256", timeout=30):
        count += 1
        time.sleep(0.015)
        if count % 8 == 0:
            peak = max(peak, rss_mib(pid_proxy))
    report(count == 256 and peak - baseline < 64,
           f"backpressure: 256 MiB to a slow reader in {time.time() - started:.1f} s; proxy RSS "
           f"{baseline:.0f} → peak {peak:.0f} MiB")

    before_a = metric(admin, "zoneward_requests_total", service="grpc", destination_zone="zone-a")
    before_b = metric(admin, "zoneward_requests_total", service="grpc", destination_zone="zone-b")
    report(before_a >= 28 and before_b == 0,
           f"/metrics: streams per zone pair follow the plan (zone-a {before_a:.0f}, zone-b {before_b:.0f})")
    ok = metric(admin, "zoneward_grpc_responses_total", service="grpc", grpc_status="0")
    deadline = metric(admin, "zoneward_grpc_responses_total", service="grpc", grpc_status="4")
    report(ok >= 24 and deadline >= 1, f"/metrics: gRPC calls by grpc_status (0: {ok:.0f}, 4: {deadline:.0f})")

    # Random frames from many raw connections: the proxy keeps serving, and the process is still there.
    connections = chaos(proxy, 4, seed=int(time.time()))
    alive = True
    try:
        os.kill(pid_proxy, 0)
    except OSError:
        alive = False
    report(alive and unary(b"whoami", timeout=5) == b"zone-a",
           f"chaos: {connections} connections of random frames, resets, settings and garbage; still serving")

    # An endpoint killed mid-stream: that call fails UNAVAILABLE; new calls succeed on the other endpoint.
    stream = server_stream(b"100", timeout=20)
    received = 0
    code = None
    try:
        for _ in stream:
            received += 1
            if received == 3:
                os.kill(pid_a, signal.SIGKILL)
    except grpc.RpcError as error:
        code = error.code()
    report(code == grpc.StatusCode.UNAVAILABLE and received >= 3,
           f"zone-a killed mid-stream after {received} messages: the call fails UNAVAILABLE", code)
    names = []
    failures = []
    for _ in range(10):
        try:
            names.append(unary(b"whoami", timeout=5))
        except grpc.RpcError as error:
            failures.append(error.code())
    report(names == [b"zone-b"] * 10, "new calls succeed on zone-b", (names, failures))
    # zone-b allows 2 concurrent streams per connection: 6 calls at once need 3 connections, not a queue.
    sleeper = channel.unary_unary("/zw.Test/Sleep")
    started = time.time()
    calls = [sleeper.future(b"1000", timeout=10) for _ in range(6)]
    time.sleep(0.5)
    connections = upstream_connections(port_b)
    answers = []
    for call in calls:
        try:
            answers.append(call.result())
        except grpc.RpcError as error:
            answers.append(error.code())
    elapsed = time.time() - started
    report(answers == [b"zone-b"] * 6 and connections >= 3 and elapsed < 1.9,
           f"SETTINGS_MAX_CONCURRENT_STREAMS 2: 6 concurrent calls over {connections} connections in {elapsed:.1f} s",
           answers)
    # zone-b's GOAWAY drains its connections: the stream in flight finishes there; new streams go to a new
    # connection (to a new server process on the same port, started once the old one stopped listening).
    import subprocess

    drained = {}

    def drained_call():
        try:
            drained["messages"] = list(server_stream(b"20", timeout=10))
        except grpc.RpcError as error:
            drained["error"] = error.code()

    thread = threading.Thread(target=drained_call)
    thread.start()
    time.sleep(0.4)
    channel.unary_unary("/zw.Test/Stop")(b"5000", timeout=5)
    time.sleep(0.3)
    replacement = subprocess.Popen([sys.executable, __file__, "server", str(port_b), "zone-b-new", markers, "2"])
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port_b), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        names = []
        for _ in range(5):
            try:
                names.append(unary(b"whoami", timeout=5))
            except grpc.RpcError as error:
                names.append(error.code())
        thread.join(12)
        got = drained.get("messages", [])
        report(len(got) == 20 and got[-1] == b"zone-b:19",
               f"GOAWAY from zone-b: the stream in flight finishes on its draining connection ({len(got)} of 20)",
               drained.get("error"))
        report(names == [b"zone-b-new"] * 5, "after the GOAWAY new calls go to a new connection", names)
        after_b = metric(admin, "zoneward_requests_total", service="grpc", destination_zone="zone-b")
        report(after_b >= 10, f"/metrics: zone-b now gets the streams ({after_b:.0f})")
        shutdown(server_stream, pid_proxy)
    finally:
        replacement.kill()
        replacement.wait()
    channel.close()


def shutdown(server_stream, pid_proxy):

    # Graceful shutdown: GOAWAY, and the stream in flight finishes.
    result = {}

    def long_call():
        try:
            result["messages"] = list(server_stream(b"15", timeout=10))
        except grpc.RpcError as error:
            result["error"] = error.code()

    thread = threading.Thread(target=long_call)
    thread.start()
    time.sleep(0.5)
    os.kill(pid_proxy, signal.SIGTERM)
    thread.join(12)
    report(len(result.get("messages", [])) == 15,
           "shutdown: the stream in flight finishes (15 messages over 1.5 s)", result.get("error"))


if __name__ == "__main__":
    if sys.argv[1] == "silent":
        silent(int(sys.argv[2]))
    elif sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 0,
              *sys.argv[6:8])
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
