#!/usr/bin/env python3
"""Soak chaingate on loopback while its token server flaps; report RSS, open files and errors.

Usage: python3 benches/soak/soak.py [--binary target/release/chaingate] [--seconds 120]
                                    [--workers 8] [--tokens 200] [--flap 20]

Everything runs on 127.0.0.1 and stops by itself after --seconds. The token server answers 503
for 5 s out of every --flap seconds; warm callers keep being served from the cache, cold ones get
503 + Retry-After. Only the Python standard library is used.
"""
import argparse, http.client, http.server, json, os, random, socket, subprocess, sys, tempfile, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

class TokenServer(http.server.BaseHTTPRequestHandler):
    flap_every = 20
    started = time.time()
    calls = 0
    def do_POST(self):
        length = int(self.headers.get("content-length", 0)); self.rfile.read(length)
        TokenServer.calls += 1
        down = (time.time() - TokenServer.started) % TokenServer.flap_every < 5
        body = (b'{"error":"temporarily_unavailable"}' if down else
                json.dumps({"access_token": "at2-%08x" % random.getrandbits(32), "token_type": "Bearer", "expires_in": 30}).encode())
        self.send_response(503 if down else 200)
        self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass

class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass

def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

def proc_stats(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"): rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))

def main():
    p = argparse.ArgumentParser(); p.add_argument("--binary", default="target/release/chaingate")
    p.add_argument("--seconds", type=int, default=120); p.add_argument("--workers", type=int, default=8)
    p.add_argument("--tokens", type=int, default=200); p.add_argument("--flap", type=int, default=20)
    a = p.parse_args()
    TokenServer.flap_every = a.flap
    sts, upstream = serve(TokenServer), serve(Upstream)
    listen, admin = free_port(), free_port()
    cfg = f'''listen = "127.0.0.1:{listen}"
admin_listen = "127.0.0.1:{admin}"
[log]
access_log = false
[cache]
expiry_skew = "5s"
[domains.soak]
token_endpoint = "http://127.0.0.1:{sts.server_port}/token"
client_id = "soak"
client_secret = "soak-secret"
allow_insecure_http = true
timeout = "1s"
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:{upstream.server_port}"
domain = "soak"
'''
    path = os.path.join(tempfile.mkdtemp(), "soak.toml"); open(path, "w").write(cfg)
    gw = subprocess.Popen([a.binary, "run", "--config", path], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1); c.request("GET", "/ready")
            if c.getresponse().status == 200: break
        except OSError: pass
        time.sleep(0.05)
    counts = {"ok": 0, "503": 0, "other": 0}
    lock, stop = threading.Lock(), time.time() + a.seconds
    def worker():
        conn = None
        while time.time() < stop:
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
                conn.request("GET", "/soak", headers={"Authorization": f"Bearer caller-{random.randrange(a.tokens)}"})
                r = conn.getresponse(); r.read()
                key = "ok" if r.status == 200 else "503" if r.status == 503 else "other"
            except OSError:
                key, conn = "other", None
            with lock: counts[key] += 1
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.workers)]
    for t in threads: t.start()
    print(f"| t (s) | RSS (KiB) | open fds | 200 | 503 | other | token calls |\n|---|---|---|---|---|---|---|")
    t0 = time.time()
    while time.time() < stop:
        time.sleep(min(5, max(0, stop - time.time())))
        rss, fds = proc_stats(gw.pid)
        with lock: c = dict(counts)
        print(f"| {time.time() - t0:.0f} | {rss} | {fds} | {c['ok']} | {c['503']} | {c['other']} | {TokenServer.calls} |", flush=True)
    for t in threads: t.join(timeout=10)
    gw.terminate(); code = gw.wait(timeout=30)
    print(f"\nchaingate exited {code}; 'other' (neither 200 nor a 503 during an outage) must stay 0")
    sys.exit(0 if counts["other"] == 0 and code == 0 else 1)

if __name__ == "__main__":
    main()
