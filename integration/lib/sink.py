#!/usr/bin/env python3
"""An HTTP/1.1 upload sink for the integration scenarios: reads the whole request body (Content-Length or
chunked), then answers with its size and SHA-256. Serves until killed. Usage: sink.py PORT"""
import hashlib
import socketserver
import sys


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while True:
                header = self.rfile.readline()
                if header in (b"\r\n", b""):
                    break
                name, _, value = header.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            digest = hashlib.sha256()
            size = 0
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    length = int(self.rfile.readline().split(b";")[0], 16)
                    if length == 0:
                        # The last chunk: trailers, then an empty line.
                        while self.rfile.readline() not in (b"\r\n", b""):
                            pass
                        break
                    remaining = length
                    while remaining:
                        block = self.rfile.read(min(remaining, 1 << 20))
                        digest.update(block)
                        size += len(block)
                        remaining -= len(block)
                    self.rfile.readline()
            else:
                remaining = int(headers.get("content-length", "0"))
                while remaining:
                    block = self.rfile.read(min(remaining, 1 << 20))
                    digest.update(block)
                    size += len(block)
                    remaining -= len(block)
            body = f"size={size} sha256={digest.hexdigest()}\n".encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
