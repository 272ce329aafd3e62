"""Changes the API-server double's EndpointSlices and times how long the proxy takes to follow.

Usage: k8s_change.py CONTROL_PORT ADMIN_PORT BACKEND_BASE SPEC… -- PORT_OFFSET…
  SPEC is "zone:ready,…[:terminating,…]" (an empty zone is "a:"); no SPEC changes nothing (only waits).
  Zone c's endpoints carry only a nodeName, so their zone comes from the node's label.
  ADMIN_PORT 0 only changes. Otherwise polls /admin/plan every 10 ms for up to 3 s until the proxy's
  endpoints are exactly 127.0.0.1:(BACKEND_BASE + offset) for the offsets given; prints
  "ok <n> endpoints after <s> s" when that took at most 1 s, else what it saw.
"""

import json
import sys
import time
import urllib.request


def slices_for(specs: list[str], base: int) -> list[dict]:
    slices = []
    for spec in specs:
        parts = spec.split(":")
        zone = parts[0]
        ready = [p for p in parts[1].split(",") if p] if len(parts) > 1 else []
        terminating = [p for p in parts[2].split(",") if p] if len(parts) > 2 else []
        endpoints = [(p, {"ready": True, "serving": True, "terminating": False}) for p in ready]
        endpoints += [(p, {"ready": False, "serving": True, "terminating": True}) for p in terminating]
        for offset, conditions in endpoints:
            endpoint = {"addresses": ["127.0.0.1"], "conditions": conditions, "nodeName": f"node-{zone}"}
            if zone != "c":
                endpoint["zone"] = zone
            # Each backend has its own port, so each endpoint gets its own slice (a service's slices may
            # be many; the proxy must add them all up).
            slices.append({"metadata": {"name": f"web-{zone}-{offset}"}, "addressType": "IPv4",
                           "ports": [{"name": "http", "port": base + int(offset), "protocol": "TCP"}],
                           "endpoints": [endpoint]})
    return slices


def main() -> None:
    control, admin, base = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rest = sys.argv[4:]
    split = rest.index("--") if "--" in rest else len(rest)
    specs, offsets = rest[:split], rest[split + 1:]
    if specs:
        body = json.dumps({"namespace": "shop", "service": "web", "slices": slices_for(specs, base)}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{control}/slices", data=body, method="POST")
        urllib.request.urlopen(request, timeout=5).read()
    if admin == 0:
        return
    started = time.monotonic()
    wanted = sorted(f"127.0.0.1:{base + int(offset)}" for offset in offsets)
    seen: list[str] = []
    while time.monotonic() - started < 3:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/admin/plan?service=web", timeout=2) as answer:
                seen = sorted(endpoint["address"] for endpoint in json.load(answer)["endpoints"])
        except OSError:
            pass
        if seen == wanted:
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    if seen == wanted and elapsed <= 1.0:
        print(f"ok the proxy has the double's {len(wanted)} endpoints after {elapsed:.2f} s")
    else:
        print(f"wanted {wanted} within 1 s, saw {seen} after {elapsed:.2f} s")


if __name__ == "__main__":
    main()
