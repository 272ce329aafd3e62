#!/usr/bin/env python3
"""Writes the seed corpus of the HTTP framing fuzzer to fuzz/corpus/http-framing (run from anywhere).

Each seed is one selector byte (what to fuzz; see fuzz/HTTPFramingFuzz/FuzzEntry.swift) and the bytes
of a peer: valid requests and responses, chunked bodies, pipelined connections, and the smuggling
vectors of Tests/ZonewardProxyTests/HTTPHeadParserTests.swift. The files are committed; rerun this after
changing it and commit the result.
"""
import hashlib
import os
import shutil

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http-framing")

REQUEST, RESPONSE, BODY, CONNECTION = 0, 1, 2, 3
IPV6 = 4  # request
HEAD_REQUEST, CLIENT_KEEP_ALIVE, CLIENT_HTTP11 = 4, 8, 16  # response
CONTENT_LENGTH = 4  # body
UPSTREAM = 4  # connection: an upstream's responses (then 8 is isHeadRequest, 16 clientIsHTTP11)


def split_seed(n):
    return n << 5


requests = [
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /path?q=1 HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
    "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nUpgrade: h2c\r\n"
    "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
    "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "HEAD /x HTTP/1.1\r\nHost: a\r\nForwarded: for=198.51.100.1;proto=https\r\nX-Forwarded-For: 10.0.0.1\r\n"
    "X-Forwarded-For: 10.0.0.2\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep-alive\r\nTrailer: X\r\n\r\n",
    "DELETE /r HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: Content-Length, x-a\r\nX-A: 1\r\n\r\n",
    "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "PATCH /p HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
    # Smuggling vectors and other refusals (HTTPHeadParserTests.refusesAmbiguousRequests).
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n",
    "GET / HTTP/1.1\nHost: a\n\n",
    "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nBad\x01Name: 1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-A: null\x00byte\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-A: del\x7f\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "GET / XTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n" + "".join("X-%d: v\r\n" % i for i in range(98)) + "\r\n",
]

responses = [
    ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", HEAD_REQUEST | CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 204 No Content\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n", CLIENT_KEEP_ALIVE),
    ("HTTP/1.1 200 OK\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 100 Continue\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", CLIENT_HTTP11),
    ("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: x\r\nContent-Length: 1\r\n\r\n",
     CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", CLIENT_KEEP_ALIVE),
    ("HTTP/1.0 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\n", CLIENT_KEEP_ALIVE),
    ("HTTP/1.1 500 Internal Server Error\r\nProxy-Authenticate: Basic\r\nTrailer: X\r\nContent-Length: 2\r\n\r\n",
     CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 2000 OK\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("ICY 200 OK\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
    ("HTTP/1.2 200 OK\r\n\r\n", CLIENT_KEEP_ALIVE | CLIENT_HTTP11),
]

chunked = [
    "5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1",
    "0\r\n\r\n",
    "3\r\nabc\r\n0\r\n\r\n",
    "a \r\n0123456789\r\n0\t;x\r\n\r\n",
    "5\r\nhel",
    # Malformed (ChunkedBodyScannerTests.refusesMalformedChunks).
    "5\nhello\r\n0\r\n\r\n",
    "5\r\nhello\n0\r\n\r\n",
    "zz\r\n",
    "-5\r\n",
    "1000000000000000\r\n",
    "5\r\nhelloX\r\n",
    "0\r\nbad trailer\x01\r\n\r\n",
    "\r\n",
    "5 5\r\nhello\r\n0\r\n\r\n",
    "5\tx\r\nhello\r\n0\r\n\r\n",
    "0 0\r\n\r\n",
    "5 \r\nhello\r\n3 \t;ext=\"a b\"\r\nabc\r\n0\t\r\n\r\n",
]

connections = [
    "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    "GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHo",
    "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
]


upstreams = [
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0),
    ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nhello\r\n0\r\n\r\n", 16),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 8),  # HEAD: no body
    ("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\nstray", 16),
    ("HTTP/1.0 200 OK\r\n\r\nuntil the connection closes", 0),
    ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes", 16),
]


def write(seeds):
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, data in seeds:
        with open(os.path.join(OUT, "%s-%s" % (name, hashlib.sha1(data).hexdigest()[:10])), "wb") as f:
            f.write(data)


def latin1(text):
    return text.encode("latin-1")


seeds = []
for i, text in enumerate(requests):
    seeds.append(("request", bytes([REQUEST | split_seed(i % 8)]) + latin1(text)))
seeds.append(("request-ipv6", bytes([REQUEST | IPV6 | split_seed(5)]) + latin1(requests[1])))
for i, (text, flags) in enumerate(responses):
    seeds.append(("response", bytes([RESPONSE | flags | split_seed(i % 8)]) + latin1(text)))
for i, text in enumerate(chunked):
    seeds.append(("chunked", bytes([BODY | split_seed(i % 8)]) + latin1(text)))
seeds.append(("content-length", bytes([BODY | CONTENT_LENGTH | split_seed(3), 0, 5]) + b"helloGET"))
for i, text in enumerate(connections):
    seeds.append(("connection", bytes([CONNECTION | split_seed(i % 8)]) + latin1(text)))
for i, (text, flags) in enumerate(upstreams):
    seeds.append(("upstream", bytes([CONNECTION | UPSTREAM | flags | split_seed(i % 8)]) + latin1(text)))
write(seeds)
print("%d seeds in %s" % (len(seeds), OUT))
