"""A webhook receiver for the alert tests (`antcode_testkit::hook`): checks AntCode's signature as notify/src/webhook.rs
documents it and records each accepted alert.

    python3 hook.py SECRET      # prints {"port": N} once listening; exits when stdin closes

POST /hook          an alert: 401 on a bad signature or a stale timestamp, else 200 and recorded
                    (503 and not recorded while down)
POST /_down, /_up   stop or start accepting alerts
GET /_received      the accepted alerts: [{"delivery": id, "payload": body}, ...]
"""
import hashlib, hmac, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = sys.argv[1].encode()
RECEIVED, STATE = [], {"down": False}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            self.reply(200, list(RECEIVED))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path in ("/_down", "/_up"):
            STATE["down"] = self.path == "/_down"
            return self.reply(200, STATE)
        if STATE["down"]:
            return self.reply(503, {"error": "down for the test"})
        ts = self.headers.get("X-AntCode-Timestamp", "")
        sig = self.headers.get("X-AntCode-Signature", "")
        want = "sha256=" + hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300 or not hmac.compare_digest(want, sig):
            return self.reply(401, {"error": "bad signature or stale timestamp"})
        with LOCK:
            RECEIVED.append({"delivery": self.headers.get("X-AntCode-Delivery"), "payload": json.loads(body)})
        self.reply(200, {"ok": True})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(json.dumps({"port": server.server_address[1]}), flush=True)
sys.stdin.read()
