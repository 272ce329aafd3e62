#!/usr/bin/env python3
"""Bounded HTTP load for the integration scenarios: keep-alive GETs from a few threads.

Stops after --count requests or --seconds, whichever comes first. Prints one JSON object: totals,
failures, and per-request (time, outcome) where outcome is the serving zone (from a "zone=" body) or
"FAIL: reason".
"""
import argparse
import http.client
import json
import re
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--seconds", type=float, default=60)
parser.add_argument("--threads", type=int, default=4)
parser.add_argument("--path", default="/")
parser.add_argument("--timeline", action="store_true", help="include every request's time and outcome")
args = parser.parse_args()

lock = threading.Lock()
issued = 0
results = []  # (time, outcome)
start = time.monotonic()
deadline = start + args.seconds
zone_pattern = re.compile(rb"zone=([\w.-]+)")


def worker():
    global issued
    connection = None
    while True:
        with lock:
            if issued >= args.count or time.monotonic() > deadline:
                break
            issued += 1
        if connection is None:
            connection = http.client.HTTPConnection(args.host, args.port, timeout=10)
        sent = time.monotonic()
        try:
            connection.request("GET", args.path)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                outcome = "FAIL: HTTP %d %s" % (response.status, response.getheader("X-Zoneward-Error", ""))
            else:
                match = zone_pattern.search(body)
                outcome = match.group(1).decode() if match else "ok"
            if response.will_close:
                connection.close()
                connection = None
        except Exception as error:  # a failed request is data here, not a crash
            outcome = "FAIL: %s" % type(error).__name__
            connection.close()
            connection = None
        with lock:
            results.append((round(sent - start, 4), outcome))
    if connection is not None:
        connection.close()


threads = [threading.Thread(target=worker) for _ in range(args.threads)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
results.sort()
failures = [r for r in results if r[1].startswith("FAIL")]
zones = {}
for _, outcome in results:
    if not outcome.startswith("FAIL"):
        zones[outcome] = zones.get(outcome, 0) + 1
summary = {
    "total": len(results),
    "failed": len(failures),
    "firstFailures": failures[:5],
    "zones": zones,
    "seconds": round(time.monotonic() - start, 3),
    "startedAt": start,
}
if args.timeline:
    summary["timeline"] = results
print(json.dumps(summary))
