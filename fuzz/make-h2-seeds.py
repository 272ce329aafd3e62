#!/usr/bin/env python3
"""Writes the HTTP/2 fuzzer's seed corpus (fuzz/corpus/h2-framing) with PyPI's h2 as the client.

Each seed is one byte that seeds how the input is split into reads, then the frames a client sends after
the connection preface (the harness sends the preface itself): requests with and without bodies, gRPC with
grpc-timeout and trailers, connection-specific fields, a header block long enough for CONTINUATION frames,
RST_STREAM, PING, PRIORITY, WINDOW_UPDATE, SETTINGS and GOAWAY.
    python3 fuzz/make-h2-seeds.py
"""
import hashlib
import os

import h2.config
import h2.connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_ACK = bytes([0, 0, 0, 4, 1, 0, 0, 0, 0])
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2-framing")


def client():
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    # The client's SETTINGS, then an ACK of the server's (whose limits, such as the 64 KiB header list,
    # apply once acknowledged), then what each seed adds.
    conn.seed_start = conn.data_to_send() + SETTINGS_ACK
    return conn


def request(path="/", method="GET", extra=(), grpc=False):
    headers = [(":method", method), (":scheme", "http"), (":authority", "svc.local"), (":path", path)]
    if grpc:
        headers += [("content-type", "application/grpc"), ("te", "trailers")]
    return headers + list(extra)


def seeds():
    c = client()
    c.send_headers(1, request(), end_stream=True)
    yield "get", c

    c = client()
    c.send_headers(1, request("/upload", "POST", [("content-length", "11")]))
    c.send_data(1, b"hello world", end_stream=True)
    yield "post", c

    c = client()
    c.send_headers(1, request("/pkg.Svc/Call", "POST", [("grpc-timeout", "250m")], grpc=True))
    c.send_data(1, b"\x00\x00\x00\x00\x05hello")
    c.send_headers(1, [("grpc-status", "0")], end_stream=True)
    yield "grpc-trailers", c

    c = client()
    c.send_headers(1, request("/pkg.Svc/Call", "POST", [("grpc-timeout", "99999999H")], grpc=True),
                   end_stream=True)
    c.send_headers(3, request("/pkg.Svc/Call", "POST", [("grpc-timeout", "1x")], grpc=True), end_stream=True)
    yield "grpc-timeouts", c

    c = client()
    c.send_headers(1, request("/", extra=[("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                                          ("x-forwarded-for", "10.0.0.1"), ("forwarded", "for=10.0.0.1"),
                                          ("x-trust", "1"), ("te", "gzip"), ("Upper", "case")]),
                   end_stream=True)
    yield "hop-by-hop", c

    c = client()
    c.send_headers(1, request("/", extra=[("x-big", "a" * 20000)]), end_stream=True)
    yield "continuation", c

    c = client()
    c.send_headers(1, request(), end_stream=False)
    c.reset_stream(1)
    c.send_headers(3, request(), end_stream=False)
    c.reset_stream(3)
    yield "rapid-reset", c

    c = client()
    c.ping(b"12345678")
    c.prioritize(1, weight=200, depends_on=0, exclusive=True)
    c.increment_flow_control_window(65535)
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                       h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 15})
    c.send_headers(1, request(), end_stream=True)
    c.close_connection()
    yield "control", c

    c = client()
    for stream in range(1, 12, 2):
        c.send_headers(stream, request(f"/s{stream}"), end_stream=True)
    yield "many-streams", c


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, conn in seeds():
        frames = conn.seed_start + conn.data_to_send()
        assert frames.startswith(PREFACE)
        frames = frames[len(PREFACE):]
        for split in (0, 7):
            data = bytes([split]) + frames
            digest = hashlib.sha256(data).hexdigest()[:10]
            with open(os.path.join(OUT, f"{name}-{digest}"), "wb") as f:
                f.write(data)
    print(f"wrote seeds to {OUT}")


if __name__ == "__main__":
    main()
