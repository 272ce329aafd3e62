"""A Kubernetes API server double for integration tests: no real API server runs on these machines.

It speaks the real wire format for what Zoneward uses:
- GET  /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=kubernetes.io/service-name=NAME
       an EndpointSliceList with metadata.resourceVersion;
- the same with watch=true&resourceVersion=RV[&allowWatchBookmarks=true&timeoutSeconds=N]: a chunked stream of
       one JSON event per line (ADDED, MODIFIED, DELETED, BOOKMARK), replaying what happened after RV; an RV
       older than the compaction point gets an ERROR event carrying a 410 Expired Status, as a real server does;
- GET  /api/v1/nodes/NAME: a Node with its topology.kubernetes.io/zone label;
- GET/PUT /apis/coordination.k8s.io/v1/namespaces/NS/leases/NAME and POST .../leases: Leases for leader
       election, with optimistic concurrency as the real server: a PUT whose metadata.resourceVersion is not the
       stored one gets 409 Conflict, a POST of an existing Lease 409 AlreadyExists, a GET or PUT of an absent
       one 404 NotFound (each with a Status object); every write bumps the shared resourceVersion;
- every request needs "Authorization: Bearer TOKEN" with the current token, else 401 with a Status object.
TLS with a certificate from --cert/--key (the client verifies it against the CA in its kubeconfig).

A plain-HTTP control port lets the test script change the world:
- POST /slices  {"namespace", "service", "slices": [EndpointSlice...]}: replace the service's slices
  (ADDED/MODIFIED/DELETED events as the differences require);
- POST /token   {"token": "..."}: the valid token from now on (the old one gets 401);
- POST /drop:   end every open watch stream abruptly (a disconnect mid-stream);
- POST /compact: forget the event history (the next resume from an old RV gets 410);
- POST /lease   {"namespace", "name", "spec"[, "annotations"]}: another writer's Lease (created or replaced, new
  resourceVersion), so a client's next PUT with the old version gets 409;
- GET  /state:  the current slices, leases and counters, for the test's checks.

Usage: python3 k8s_api_double.py --port P --control-port C --cert CERT --key KEY --token T --nodes node-a=zone-a,...
"""

import argparse
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Condition()
STATE = {
    "rv": 1000,
    "compacted": 1000,
    "token": "",
    "slices": {},  # (namespace, name) -> object
    "events": [],  # (rv, namespace, service, type, object)
    "drop_generation": 0,
    "nodes": {},
    "leases": {},  # (namespace, name) -> object
    "requests": {"list": 0, "watch": 0, "unauthorized": 0, "gone": 0, "lease_conflicts": 0},
}

LEASES = ["apis", "coordination.k8s.io", "v1", "namespaces"]


def store_lease(namespace: str, name: str, obj: dict) -> dict:
    """Call with LOCK held: stores the Lease under a new resourceVersion (no watch event: Leases are not watched)."""
    STATE["rv"] += 1
    obj = json.loads(json.dumps(obj))
    obj["apiVersion"] = "coordination.k8s.io/v1"
    obj["kind"] = "Lease"
    meta = obj.setdefault("metadata", {})
    meta["name"] = name
    meta["namespace"] = namespace
    meta["resourceVersion"] = str(STATE["rv"])
    previous = STATE["leases"].get((namespace, name))
    meta.setdefault("uid", (previous or {}).get("metadata", {}).get("uid") or f"lease-{STATE['rv']}")
    meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    obj.setdefault("spec", {})
    STATE["leases"][(namespace, name)] = obj
    return obj


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def service_of(obj: dict) -> str:
    return obj.get("metadata", {}).get("labels", {}).get("kubernetes.io/service-name", "")


def record(event_type: str, obj: dict) -> None:
    """Call with LOCK held: bumps the resourceVersion and appends the event."""
    STATE["rv"] += 1
    obj = json.loads(json.dumps(obj))
    obj.setdefault("metadata", {})["resourceVersion"] = str(STATE["rv"])
    namespace = obj["metadata"].get("namespace", "default")
    if event_type == "DELETED":
        STATE["slices"].pop((namespace, obj["metadata"]["name"]), None)
    else:
        STATE["slices"][(namespace, obj["metadata"]["name"])] = obj
    STATE["events"].append((STATE["rv"], namespace, service_of(obj), event_type, obj))
    LOCK.notify_all()


class API(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        with LOCK:
            token = STATE["token"]
        if self.headers.get("Authorization") != f"Bearer {token}":
            with LOCK:
                STATE["requests"]["unauthorized"] += 1
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return
        parts = url.path.strip("/").split("/")
        if len(parts) == 7 and parts[:4] == LEASES and parts[5] == "leases":
            with LOCK:
                lease = STATE["leases"].get((parts[4], parts[6]))
            if lease is None:
                self.send_json(404, status(404, "NotFound", f'leases.coordination.k8s.io "{parts[6]}" not found'))
            else:
                self.send_json(200, lease)
            return
        if len(parts) == 4 and parts[:3] == ["api", "v1", "nodes"]:
            zone = STATE["nodes"].get(parts[3])
            if zone is None:
                self.send_json(404, status(404, "NotFound", f'nodes "{parts[3]}" not found'))
            else:
                self.send_json(200, {"kind": "Node", "apiVersion": "v1", "metadata": {
                    "name": parts[3], "labels": {"topology.kubernetes.io/zone": zone}}})
            return
        if len(parts) != 6 or parts[:3] != ["apis", "discovery.k8s.io", "v1"] or parts[5] != "endpointslices":
            self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        namespace = parts[4]
        selector = query.get("labelSelector", "")
        service = selector.split("=", 1)[1] if selector.startswith("kubernetes.io/service-name=") else None
        if query.get("watch") == "true":
            self.watch(namespace, service, query)
            return
        with LOCK:
            STATE["requests"]["list"] += 1
            items = [obj for (ns, _), obj in sorted(STATE["slices"].items())
                     if ns == namespace and (service is None or service_of(obj) == service)]
            body = {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                    "metadata": {"resourceVersion": str(STATE["rv"])}, "items": items}
        self.send_json(200, body)

    def authorized(self) -> bool:
        with LOCK:
            token = STATE["token"]
        if self.headers.get("Authorization") != f"Bearer {token}":
            with LOCK:
                STATE["requests"]["unauthorized"] += 1
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def read_object(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            obj = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.send_json(400, status(400, "BadRequest", "the body is not a JSON object"))
            return None
        return obj

    def do_POST(self) -> None:
        if not self.authorized():
            return
        parts = urlparse(self.path).path.strip("/").split("/")
        if len(parts) != 6 or parts[:4] != LEASES or parts[5] != "leases":
            self.send_json(405, status(405, "MethodNotAllowed", "the server does not allow this method"))
            return
        obj = self.read_object()
        if obj is None:
            return
        name = obj.get("metadata", {}).get("name")
        if not name:
            self.send_json(422, status(422, "Invalid", "metadata.name: Required value"))
            return
        with LOCK:
            if (parts[4], name) in STATE["leases"]:
                STATE["requests"]["lease_conflicts"] += 1
                answer = (409, status(409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists'))
            else:
                obj.setdefault("metadata", {}).pop("resourceVersion", None)
                answer = (201, store_lease(parts[4], name, obj))
        self.send_json(*answer)

    def do_PUT(self) -> None:
        if not self.authorized():
            return
        parts = urlparse(self.path).path.strip("/").split("/")
        if len(parts) != 7 or parts[:4] != LEASES or parts[5] != "leases":
            self.send_json(405, status(405, "MethodNotAllowed", "the server does not allow this method"))
            return
        obj = self.read_object()
        if obj is None:
            return
        name = parts[6]
        with LOCK:
            current = STATE["leases"].get((parts[4], name))
            wanted = obj.get("metadata", {}).get("resourceVersion")
            if current is None:
                answer = (404, status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found'))
            elif wanted and wanted != current["metadata"]["resourceVersion"]:
                STATE["requests"]["lease_conflicts"] += 1
                answer = (409, status(409, "Conflict", f'Operation cannot be fulfilled on leases.coordination.k8s.io '
                                      f'"{name}": the object has been modified; please apply your changes to the '
                                      f'latest version and try again'))
            else:
                answer = (200, store_lease(parts[4], name, obj))
        self.send_json(*answer)

    def chunk(self, line: dict) -> None:
        data = (json.dumps(line) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, namespace: str, service, query: dict) -> None:
        since = int(query.get("resourceVersion") or 0)
        timeout = min(int(query.get("timeoutSeconds") or 300), 600)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        with LOCK:
            STATE["requests"]["watch"] += 1
            generation = STATE["drop_generation"]
            if since < STATE["compacted"]:
                STATE["requests"]["gone"] += 1
                gone = status(410, "Expired", f"too old resource version: {since} ({STATE['compacted']})")
            else:
                gone = None
        try:
            if gone:
                self.chunk({"type": "ERROR", "object": gone})
                self.wfile.write(b"0\r\n\r\n")
                return
            position = since
            while time.monotonic() < deadline:
                with LOCK:
                    if STATE["drop_generation"] != generation:
                        # A disconnect mid-stream: no terminating chunk.
                        self.connection.shutdown(2)
                        return
                    if STATE["rv"] == position:
                        LOCK.wait(timeout=0.2)
                    current = STATE["rv"]
                    pending = [event for event in STATE["events"] if position < event[0] <= current
                               and event[1] == namespace and (service is None or event[2] == service)]
                for _, _, _, event_type, obj in pending:
                    self.chunk({"type": event_type, "object": obj})
                # Everything up to `current` for this selector has been sent.
                position = current
                if bookmarks and time.monotonic() - last_bookmark > 2:
                    self.chunk({"type": "BOOKMARK", "object": {
                        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                        "metadata": {"resourceVersion": str(current)}}})
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, body: dict) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with LOCK:
            slices = [obj for obj in STATE["slices"].values()]
            leases = [obj for obj in STATE["leases"].values()]
            self.reply({"rv": STATE["rv"], "slices": slices, "leases": leases, "requests": STATE["requests"]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with LOCK:
            if self.path == "/slices":
                namespace, service = body["namespace"], body["service"]
                wanted = {}
                for obj in body["slices"]:
                    obj.setdefault("metadata", {})["namespace"] = namespace
                    obj["metadata"].setdefault("labels", {})["kubernetes.io/service-name"] = service
                    obj.setdefault("apiVersion", "discovery.k8s.io/v1")
                    obj.setdefault("kind", "EndpointSlice")
                    wanted[obj["metadata"]["name"]] = obj
                current = {name: obj for (ns, name), obj in STATE["slices"].items()
                           if ns == namespace and service_of(obj) == service}
                for name, obj in current.items():
                    if name not in wanted:
                        record("DELETED", obj)
                for name, obj in wanted.items():
                    if name not in current:
                        record("ADDED", obj)
                    else:
                        old = dict(current[name])
                        old_meta = dict(old.get("metadata", {}))
                        old_meta.pop("resourceVersion", None)
                        old["metadata"] = old_meta
                        if json.dumps(old, sort_keys=True) != json.dumps(obj, sort_keys=True):
                            record("MODIFIED", obj)
            elif self.path == "/lease":
                obj = {"metadata": {"annotations": body.get("annotations", {})}, "spec": body.get("spec", {})}
                store_lease(body["namespace"], body["name"], obj)
            elif self.path == "/token":
                STATE["token"] = body["token"]
            elif self.path == "/drop":
                STATE["drop_generation"] += 1
                LOCK.notify_all()
            elif self.path == "/compact":
                # Other objects changed meanwhile (the version moved on) and the history was trimmed: a watch
                # resumed from before now gets 410; a fresh list's version is current and watches fine.
                STATE["rv"] += 10
                STATE["compacted"] = STATE["rv"]
                STATE["events"].clear()
            rv = STATE["rv"]
        self.reply({"rv": rv})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--nodes", default="")
    args = parser.parse_args()
    STATE["token"] = args.token
    for pair in filter(None, args.nodes.split(",")):
        node, zone = pair.split("=")
        STATE["nodes"][node] = zone
    api = ThreadingHTTPServer(("127.0.0.1", args.port), API)
    api.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    api.socket = context.wrap_socket(api.socket, server_side=True)
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    api.serve_forever()


if __name__ == "__main__":
    main()
