"""HTTP/2 frame-level conformance and flood checks against a running proxy (integration/h2-conformance.sh).

Raw sockets, with PyPI's h2 where a well-behaved client is wanted and hand-built frames where it is not.
The proxy's service must be an h2c listener in front of integration/lib/grpc_peer.py's server.
  h2_conformance.py PROXY_PORT ADMIN_PORT MARKER_DIR SERVICE PROXY_PID
Prints one "ok   ..." or "FAIL ..." line per check. Every loop is bounded, every socket has a timeout.
"""
import os
import socket
import struct
import sys
import time

import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpc_peer import grpc_request_headers, metric, raw_h2, read_until_closed, report  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
ENHANCE_YOUR_CALM = 11
REFUSED_STREAM = 7


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def frames(data):
    """(type, flags, stream, payload) of each whole frame in `data` (a server's bytes from its first frame)."""
    found = []
    offset = 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset:offset + 3], "big")
        if offset + 9 + length > len(data):
            break
        stream = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
        found.append((data[offset + 3], data[offset + 4], stream, data[offset + 9:offset + 9 + length]))
        offset += 9 + length
    return found


def goaway_code(data):
    codes = [int.from_bytes(payload[4:8], "big") for kind, _, _, payload in frames(data)
             if kind == GOAWAY and len(payload) >= 8]
    return codes[-1] if codes else None


def message(payload):
    """One uncompressed gRPC message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def send_call(conn, stream, path, payload, extra=()):
    conn.send_headers(stream, grpc_request_headers(path, extra))
    conn.send_data(stream, message(payload), end_stream=True)


class Streams:
    """What each stream got: data, grpc-status, reset code; and the connection's end."""

    def __init__(self):
        self.data = {}
        self.status = {}
        self.ended = set()
        self.reset = {}
        self.terminated = None
        self.pings = []
        self.acks = 0

    def take(self, event):
        if isinstance(event, h2.events.DataReceived):
            self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            status = dict(event.headers).get("grpc-status")
            if status is not None:
                self.status[event.stream_id] = status
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.reset[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event.error_code
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings.append(event.ping_data)
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.acks += 1


def drive(sock, conn, seconds, done, on_event=None, state=None):
    """Reads and answers (SETTINGS and PING ACKs) until `done(state)` or `seconds` pass or the peer closes."""
    state = state or Streams()
    deadline = time.time() + seconds
    while time.time() < deadline and not done(state):
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                break
        sock.settimeout(max(0.05, min(0.2, deadline - time.time())))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            state.terminated = "closed" if state.terminated is None else state.terminated
            break
        for event in conn.receive_data(data):
            state.take(event)
            if on_event:
                on_event(event)
    return state


def served(port):
    """One unary call on a fresh connection: the proxy still serves."""
    try:
        sock, conn = raw_h2(port)
    except OSError:
        return False
    try:
        send_call(conn, 1, "/zw.Test/Unary", b"whoami")
        state = drive(sock, conn, 5, lambda s: 1 in s.ended or 1 in s.reset)
        return state.status.get(1) == "0" and b"zone-a" in state.data.get(1, b"")
    finally:
        sock.close()


def raw_connection(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def case_settings(port):
    sock = raw_connection(port)
    answer = b""
    deadline = time.time() + 3
    # Until the proxy's SETTINGS and its ACK of ours are both in.
    while time.time() < deadline and sum(1 for f in frames(answer) if f[0] == SETTINGS) < 2:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        answer += chunk
    parsed = frames(answer)
    first = parsed[0] if parsed else None
    report(first is not None and first[0] == SETTINGS and first[1] == 0,
           "the proxy's first frame is its SETTINGS (RFC 9113 §3.4)", first and first[:2])
    advertised = {}
    if first:
        for offset in range(0, len(first[3]) - 5, 6):
            key, value = struct.unpack(">HI", first[3][offset:offset + 6])
            advertised[key] = value
    report(advertised.get(3) == 100, "SETTINGS_MAX_CONCURRENT_STREAMS 100", advertised)
    report(advertised.get(6) == 65536, "SETTINGS_MAX_HEADER_LIST_SIZE 65536", advertised)
    report(advertised.get(4) == 256 * 1024, "SETTINGS_INITIAL_WINDOW_SIZE 256 KiB", advertised)
    acks = [f for f in parsed if f[0] == SETTINGS and f[1] & 1]
    report(len(acks) == 1 and acks[0][3] == b"", "our SETTINGS is ACKed (empty payload, flag ACK)", len(acks))
    # A SETTINGS mid-connection is ACKed too; an unknown setting is ignored (RFC 9113 §6.5.2).
    sock.sendall(frame(SETTINGS, 1, 0) + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 32768) + struct.pack(">HI", 0xF0F0, 7)))
    more, closed = read_until_closed(sock, 1)
    report(any(f[0] == SETTINGS and f[1] & 1 for f in frames(more)) and not closed,
           "a later SETTINGS (with an unknown identifier) is ACKed and the connection stays open")
    sock.close()


def case_ping(port):
    sock, conn = raw_h2(port)
    conn.ping(b"zw-ping!")
    state = drive(sock, conn, 3, lambda s: s.pings)
    report(state.pings == [b"zw-ping!"], "PING is answered with an ACK carrying the same 8 bytes", state.pings)
    sock.close()


def case_priority(port):
    sock, conn = raw_h2(port)
    conn.prioritize(1, weight=200, depends_on=0)          # PRIORITY for an idle stream
    conn.prioritize(3, weight=16, depends_on=1, exclusive=True)
    conn.send_headers(1, grpc_request_headers("/zw.Test/Unary"), priority_weight=32, priority_depends_on=0)
    conn.prioritize(1, weight=1, depends_on=3)            # ... for an open one
    conn.send_data(1, message(b"whoami"), end_stream=True)
    send_call(conn, 5, "/zw.Test/Unary", b"whoami")
    state = drive(sock, conn, 5, lambda s: {1, 5} <= s.ended or s.reset or s.terminated is not None)
    ok = all(state.status.get(i) == "0" and b"zone-a" in state.data.get(i, b"") for i in (1, 5))
    report(ok and not state.reset and state.terminated is None,
           "PRIORITY frames (idle, open, exclusive, in HEADERS) are ignored safely: both calls served",
           (state.status, state.reset, state.terminated))
    sock.close()


def case_window_update(port):
    """4 MiB to a client whose windows are the default 64 KiB and who does not give any back: it stalls at the
    window; WINDOW_UPDATEs let it finish."""
    sock, conn = raw_h2(port)
    send_call(conn, 1, "/zw.Test/Firehose", b"4")
    received = [0]
    unacked = [0]

    def count(event):
        if isinstance(event, h2.events.DataReceived):
            received[0] += event.flow_controlled_length
            unacked[0] += event.flow_controlled_length

    state = drive(sock, conn, 1.5, lambda s: 1 in s.ended, on_event=count)
    stalled = received[0]
    report(0 < stalled <= 65535 and 1 not in state.ended,
           f"a 4 MiB answer stops at the client's 64 KiB window ({stalled} bytes in 1.5 s)")

    def give_back(event):
        count(event)
        if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    if unacked[0]:
        conn.acknowledge_received_data(unacked[0], 1)
    started = time.time()
    state = drive(sock, conn, 20, lambda s: 1 in s.ended or 1 in s.reset, on_event=give_back, state=state)
    expected = 4 * (1024 * 1024 + 5)
    report(1 in state.ended and state.status.get(1) == "0" and len(state.data.get(1, b"")) == expected,
           f"WINDOW_UPDATEs let it finish: {len(state.data.get(1, b''))} of {expected} bytes and grpc-status 0 "
           f"in {time.time() - started:.1f} s", (state.status, state.reset))
    sock.close()


def case_rst_stream(port, markers):
    sock, conn = raw_h2(port)
    send_call(conn, 1, "/zw.Test/Sleep", b"500")
    send_call(conn, 3, "/zw.Test/Slow", b"conformance-rst")
    send_call(conn, 5, "/zw.Test/Sleep", b"500")
    state = drive(sock, conn, 0.2, lambda s: False)
    conn.reset_stream(3, error_code=8)  # CANCEL
    state = drive(sock, conn, 5, lambda s: {1, 5} <= s.ended or s.terminated is not None, state=state)
    marker = os.path.join(markers, "conformance-rst.cancelled")
    for _ in range(40):
        if os.path.exists(marker):
            break
        time.sleep(0.05)
    report(all(state.status.get(i) == "0" for i in (1, 5)) and 3 not in state.status and state.terminated is None,
           "RST_STREAM from the client ends only that stream: the other two on the connection complete",
           (state.status, state.terminated))
    report(os.path.exists(marker), "... and the reset call is cancelled upstream (the server saw it go)")
    sock.close()


def case_goaway(port):
    sock, conn = raw_h2(port)
    send_call(conn, 1, "/zw.Test/Sleep", b"500")
    state = drive(sock, conn, 0.1, lambda s: False)
    # The client's GOAWAY (no server-initiated stream processed), written raw so the h2 library keeps reading.
    sock.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    state = drive(sock, conn, 5, lambda s: 1 in s.ended or 1 in s.reset, state=state)
    report(state.status.get(1) == "0" and b"zone-a" in state.data.get(1, b""),
           "GOAWAY from the client: the stream in flight completes", (state.status, state.reset))
    sock.close()


def flood(port, admin, service, name, build, count):
    """Sends `count` frames made by `build(i)` after the preface without reading; the proxy must answer GOAWAY
    ENHANCE_YOUR_CALM (or close), count it as a flood, and keep serving."""
    before = metric(admin, "zoneward_http2_connections_closed_total", service=service, reason="flood")
    sock = raw_connection(port)
    sent = 0
    started = time.time()
    try:
        batch = 500
        for start in range(0, count, batch):
            sock.sendall(b"".join(build(i) for i in range(start, min(count, start + batch))))
            sent = min(count, start + batch)
    except OSError:
        pass
    answer, closed = read_until_closed(sock, 5)
    sock.close()
    code = goaway_code(answer)
    said = "GOAWAY ENHANCE_YOUR_CALM" if code == ENHANCE_YOUR_CALM else "no GOAWAY read (reset)"
    report((code == ENHANCE_YOUR_CALM or code is None) and closed,
           f"{name}: {said}, connection closed, after {sent} of {count} frames sent ({time.time() - started:.2f} s)",
           (code, closed))
    after = before
    for _ in range(20):
        after = metric(admin, "zoneward_http2_connections_closed_total", service=service, reason="flood")
        if after > before:
            break
        time.sleep(0.1)
    report(after == before + 1, f"{name}: zoneward_http2_connections_closed_total{{reason=\"flood\"}} {before:.0f} → {after:.0f}")
    report(served(port), f"{name}: the proxy still serves a new connection")


def case_unmetered_frames(port):
    """Frames NIOHTTP2 does not rate-limit cost the proxy no answer and no state: 20,000 connection WINDOW_UPDATEs
    (increment 1) and 20,000 frames of an unknown type, then a call on the same connection is served."""
    sock, conn = raw_h2(port)
    drive(sock, conn, 1, lambda s: s.acks)
    started = time.time()
    burst = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 1000 + frame(0xFA, 0, 0, b"zw") * 1000
    try:
        for _ in range(20):
            sock.sendall(burst)
    except OSError as error:
        report(False, "40,000 WINDOW_UPDATE and unknown-type frames are taken", error)
        return
    answer, closed = read_until_closed(sock, 0.5)
    kinds = [f[0] for f in frames(answer)]
    report(not closed and len(kinds) <= 2 and GOAWAY not in kinds,
           f"40,000 WINDOW_UPDATE and unknown-type frames get no answer each and no GOAWAY (frames back: {kinds})")
    send_call(conn, 1, "/zw.Test/Unary", b"whoami")
    state = drive(sock, conn, 10, lambda s: 1 in s.ended or s.terminated is not None)
    report(state.status.get(1) == "0" and state.terminated is None,
           f"... and a call on that connection is then served ({time.time() - started:.2f} s in all)",
           (state.status, state.terminated))
    sock.close()


def case_connection_errors(port):
    """A connection error gets GOAWAY with its code, then the connection is closed (RFC 9113 §5.4.1)."""
    cases = [
        ("DATA on an idle stream", frame(DATA, 0, 7, b"x"), 1),
        ("HEADERS on a server-initiated (even) stream", frame(HEADERS, 0x5, 2, b"\x83\x86\x84\x41\x01a"), 1),
        ("a connection WINDOW_UPDATE of 0", frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), 1),
        ("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 31)), 3),
    ]
    for name, payload, expected in cases:
        sock = raw_connection(port)
        sock.sendall(payload)
        started = time.time()
        answer, closed = read_until_closed(sock, 3)
        sock.close()
        code = goaway_code(answer)
        report(code == expected and closed,
               f"{name}: GOAWAY {code} (expected {expected}) and the connection closed "
               f"({time.time() - started:.2f} s)", (code, closed))


def closures(admin, service, *reasons):
    return sum(metric(admin, "zoneward_http2_connections_closed_total", service=service, reason=reason)
               for reason in reasons)


def case_header_list(port, admin, service):
    before = closures(admin, service, "malformed", "header-too-large")
    sock, conn = raw_h2(port)
    conn.local_settings.max_header_list_size = 1 << 20
    drive(sock, conn, 0.3, lambda s: False)
    conn.remote_settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] = 1 << 20
    conn.remote_settings.acknowledge()
    conn.send_headers(1, grpc_request_headers("/zw.Test/Unary", [("x-big", "b" * 70000)]), end_stream=True)
    sock.sendall(conn.data_to_send())
    answer, _ = read_until_closed(sock, 3)
    kinds = [f[0] for f in frames(answer)]
    refused = [f for f in frames(answer) if f[0] == RST_STREAM and f[2] == 1] or [f for f in frames(answer) if f[0] == GOAWAY]
    code = goaway_code(answer)
    report(refused and b"grpc-status" not in answer,
           f"a 70 KiB header list (over 64 KiB) is refused: RST_STREAM or GOAWAY (GOAWAY code {code})", kinds)
    sock.close()
    after = before
    for _ in range(20):
        after = closures(admin, service, "malformed", "header-too-large")
        if after > before:
            break
        time.sleep(0.1)
    report(after == before + 1 or not code,
           f"... counted in zoneward_http2_connections_closed_total (malformed/header-too-large {before:.0f} → {after:.0f})")
    report(served(port), "... and the proxy still serves")


def case_stream_limit(port, admin, service):
    """110 streams at once, past the advertised 100. NIOHTTP2 answers a connection error (GOAWAY PROTOCOL_ERROR,
    last stream at its maximum, so the streams in flight may finish); the proxy then shuts the connection down
    gracefully. Read as raw frames (the h2 library stops at a GOAWAY), PINGs answered by hand."""
    import hpack

    before = metric(admin, "zoneward_http2_connections_closed_total", service=service, reason="stream-limit")
    sock, conn = raw_h2(port)
    drive(sock, conn, 3, lambda s: s.acks)
    conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000  # past the h2 library's check
    conn.remote_settings.acknowledge()
    streams = [1 + 2 * i for i in range(110)]
    for stream in streams:
        send_call(conn, stream, "/zw.Test/Sleep", b"300")
    sock.sendall(conn.data_to_send())
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = conn.local_settings.header_table_size
    status, refused, goaways = {}, [], []
    buffer = b""
    closed = False
    started = time.time()
    deadline = started + 20
    while time.time() < deadline:
        sock.settimeout(max(0.05, min(0.5, deadline - time.time())))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buffer += chunk
        parsed = frames(buffer)
        buffer = buffer[sum(9 + len(f[3]) for f in parsed):]
        for kind, flags, stream, payload in parsed:
            if kind == HEADERS:
                block = payload
                if flags & 0x8:
                    block = block[1:len(block) - block[0]]
                if flags & 0x20:
                    block = block[5:]
                fields = dict(decoder.decode(block))
                if "grpc-status" in fields:
                    status[stream] = fields["grpc-status"]
            elif kind == RST_STREAM:
                refused.append((stream, int.from_bytes(payload, "big")))
            elif kind == GOAWAY:
                goaways.append((int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big")))
            elif kind == PING and not flags & 1:
                sock.sendall(frame(PING, 1, 0, payload))
    sock.close()
    completed = [s for s in streams if status.get(s) == "0"]
    excess = [s for s in streams[100:] if s in status]
    report(bool(goaways) and goaways[0][1] == 1 or any(code == REFUSED_STREAM for _, code in refused),
           "110 concurrent streams (limit 100): the excess is refused (GOAWAY PROTOCOL_ERROR or REFUSED_STREAM)",
           (goaways, refused[:5]))
    # NIOHTTP2 makes it a connection error; the proxy closes the connection then (RFC 9113 §5.4.1), ending
    # the streams in flight: an answer to a stream past the limit would be the defect.
    report(not excess, f"no stream past the limit is served ({len(excess)}; {len(completed)} of the first 100 "
           "completed before the close)")
    report(closed and time.time() - started < 5,
           f"the proxy closes that connection ({time.time() - started:.1f} s; GOAWAYs {goaways})")
    after = before
    for _ in range(20):
        after = metric(admin, "zoneward_http2_connections_closed_total", service=service, reason="stream-limit")
        if after > before:
            break
        time.sleep(0.1)
    report(after == before + 1, f"zoneward_http2_connections_closed_total{{reason=\"stream-limit\"}} {before:.0f} → {after:.0f}")
    report(served(port), "... and the proxy still serves")


def main():
    port, admin, markers, service, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    report(served(port), "a plain gRPC call over h2c is served")
    case_settings(port)
    case_ping(port)
    case_priority(port)
    case_window_update(port)
    case_rst_stream(port, markers)
    case_goaway(port)
    # HEADERS without END_HEADERS (a block fragment: :method POST, static index 3), then empty CONTINUATIONs.
    flood(port, admin, service, "CONTINUATION flood",
          lambda i: frame(HEADERS, 0x1, 1, b"\x83") if i == 0 else frame(CONTINUATION, 0, 1), 5000)
    flood(port, admin, service, "SETTINGS flood", lambda i: frame(SETTINGS, 0, 0), 5000)
    flood(port, admin, service, "PING flood", lambda i: frame(PING, 0, 0, struct.pack(">Q", i)), 5000)
    case_header_list(port, admin, service)
    case_unmetered_frames(port)
    case_connection_errors(port)
    case_stream_limit(port, admin, service)
    try:
        os.kill(pid, 0)
        alive = True
    except OSError:
        alive = False
    report(alive and served(port), "after every case the proxy process is up and serving")


if __name__ == "__main__":
    main()
