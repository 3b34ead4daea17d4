"""A tiny fake of the Lambda Runtime API, for measuring a bootstrap's cold start and memory.

Usage: python3 infra/fake_runtime.py EVENT.json N -- ./bootstrap
Starts the runtime API on a free loopback port, execs the bootstrap with
AWS_LAMBDA_RUNTIME_API pointing at it, serves EVENT.json N times, and prints JSON figures:
the time from exec to the first `next` poll (cold start), per-invocation latency, and the
bootstrap's peak RSS (VmHWM).
"""
import http.server
import json
import os
import subprocess
import sys
import threading
import time

event = open(sys.argv[1], "rb").read()
total = int(sys.argv[2])
command = sys.argv[sys.argv.index("--") + 1:]

state = {"served": 0, "first_poll": None, "sent_at": {}, "latencies": [], "done": threading.Event()}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        now = time.perf_counter()
        if state["first_poll"] is None:
            state["first_poll"] = now
        if state["served"] >= total:
            state["done"].set()
            time.sleep(30)
            return
        state["served"] += 1
        request_id = f"req-{state['served']}"
        state["sent_at"][request_id] = time.perf_counter()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(event)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        parts = self.path.split("/")
        request_id = parts[4] if len(parts) > 4 else ""
        if request_id in state["sent_at"]:
            state["latencies"].append(time.perf_counter() - state["sent_at"][request_id])
        self.send_response(202)
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
           AWS_LAMBDA_FUNCTION_NAME="f", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
           AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_LOG_FORMAT="JSON")
started = time.perf_counter()
proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
state["done"].wait(timeout=120)
hwm = 0
with open(f"/proc/{proc.pid}/status") as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
proc.kill()
lat = sorted(state["latencies"])
print(json.dumps({
    "cold_start_ms": round((state["first_poll"] - started) * 1000, 2) if state["first_poll"] else None,
    "invocations": len(lat),
    "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
    "peak_rss_mib": round(hwm / 1024, 1),
}))
