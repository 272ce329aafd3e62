#!/usr/bin/env python3
"""A plain HTTP/2 server over cleartext (h2c, prior knowledge) for the integration scenarios: every request
is read whole, then answered 200 with a text body naming the server, the method, the path, the body's size
and SHA-256, and the forwarding fields it got. Serves until killed. Usage: h2c_server.py PORT NAME"""
import hashlib
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def serve_one(sock, name):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    streams[event.stream_id] = {"headers": dict(event.headers), "digest": hashlib.sha256(), "size": 0}
                elif isinstance(event, h2.events.DataReceived):
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream["digest"].update(event.data)
                        stream["size"] += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, (h2.events.StreamEnded,)) and event.stream_id in streams:
                    stream = streams.pop(event.stream_id)
                    headers = stream["headers"]
                    body = (
                        f"{name} method={headers.get(':method')} path={headers.get(':path')} "
                        f"authority={headers.get(':authority')} size={stream['size']} "
                        f"sha256={stream['digest'].hexdigest()} xff={headers.get('x-forwarded-for')} "
                        f"proto={headers.get('x-forwarded-proto')}\n"
                    ).encode()
                    conn.send_headers(
                        event.stream_id,
                        [(":status", "200"), ("content-type", "text/plain"), ("content-length", str(len(body)))],
                    )
                    conn.send_data(event.stream_id, body, end_stream=True)
                elif isinstance(event, h2.events.StreamReset):
                    streams.pop(event.stream_id, None)
            sock.sendall(conn.data_to_send())
    except Exception:
        pass
    finally:
        sock.close()


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    while True:
        sock, _ = server.accept()
        threading.Thread(target=serve_one, args=(sock, name), daemon=True).start()


main()
