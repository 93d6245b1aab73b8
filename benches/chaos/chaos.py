#!/usr/bin/env python3
"""Chaos run: chaingate under steady load while its token server misbehaves and its upstream
resets connections mid-body. Not part of CI (it runs for a minute or more); see the README.

Usage: python3 benches/chaos/chaos.py [--binary target/release/chaingate] [--seconds 120]
                                      [--phase 3] [--warm 4] [--cold 2]

The token server cycles through phases of --phase seconds each:
  up, refuse (its listener is closed: connection refused), up, slow (answers after 1.5 s, past
  the domain's 1 s timeout), up, reset (accepts, then resets the connection unanswered), up,
  error (503 temporarily_unavailable).
Callers, all on loopback:
  warm  --warm threads over 20 tokens exchanged before the run (lifetime 60 s less a 2 s skew,
        renewed in the background from half of it, so each is renewed several times during the
        run, through the faults): every answer must be 200, whatever the token server does;
  cold  --cold threads, a never-seen token per request: 200 when the server is up, else 503
        (with Retry-After) or 504, never anything else;
  body  one thread with a warm token, asking every other time for a response the upstream
        resets after 100 of its 1000 bytes: the caller sees the cut (the head had gone out), and
        the request after it is served (the broken upstream connection is not reused).
Every 5 s a row: chaingate's RSS and open files, answers by class, exchanges. Exit 1 if a warm
caller saw a failure, a cold caller an unexpected status, or chaingate did not exit 0.
Only the Python standard library is used; everything stops by itself after --seconds.
"""
import argparse, http.client, json, os, random, select, socket, struct, subprocess, sys, tempfile, threading, time

PHASES = ["up", "refuse", "up", "slow", "up", "reset", "up", "error"]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def reset(conn):
    # SO_LINGER 0: close sends RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); conn.close()


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk: return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length": length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk: return None
        body += chunk
    return head.split(b"\r\n", 1)[0]


class TokenServer:
    """A chain-grant token endpoint whose behaviour follows the phase schedule."""

    def __init__(self, phase_secs):
        self.port, self.phase_secs, self.started = free_port(), phase_secs, time.time()
        self.calls, self.lock, self.listener = 0, threading.Lock(), None
        threading.Thread(target=self.run, daemon=True).start()

    def phase(self):
        return PHASES[int((time.time() - self.started) / self.phase_secs) % len(PHASES)]

    def run(self):
        while True:
            if self.phase() == "refuse":
                if self.listener: self.listener.close(); self.listener = None
                time.sleep(0.05); continue
            if not self.listener:
                self.listener = socket.socket(); self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.listener.bind(("127.0.0.1", self.port)); self.listener.listen(256)
            if select.select([self.listener], [], [], 0.05)[0]:
                conn, _ = self.listener.accept()
                threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            while read_request(conn):
                phase = self.phase()
                with self.lock: self.calls += 1
                if phase in ("reset", "refuse"): reset(conn); return
                if phase == "slow": time.sleep(1.5)
                if phase == "error":
                    status, body = "503 Service Unavailable", b'{"error":"temporarily_unavailable"}'
                else:
                    status = "200 OK"
                    body = json.dumps({"access_token": "at2-%016x" % random.getrandbits(64), "token_type": "Bearer", "expires_in": 60}).encode()
                conn.sendall(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        except OSError:
            pass
        finally:
            try: conn.close()
            except OSError: pass


class Upstream:
    """200 with a 2-byte body; `/cut` announces 1000 bytes, sends 100 and resets."""

    def __init__(self):
        self.listener = socket.socket(); self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0)); self.listener.listen(1024); self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            while True:
                line = read_request(conn)
                if not line: return
                if b" /cut" in line:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 100); time.sleep(0.01); reset(conn); return
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except OSError:
            pass


def proc_stats(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"): rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def exchanges(admin):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5); c.request("GET", "/metrics")
    total = 0.0
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith("chaingate_token_exchanges_total{"): total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main():
    p = argparse.ArgumentParser(); p.add_argument("--binary", default="target/release/chaingate")
    p.add_argument("--seconds", type=int, default=120); p.add_argument("--phase", type=float, default=3)
    p.add_argument("--warm", type=int, default=4); p.add_argument("--cold", type=int, default=2)
    p.add_argument("--log", help="write chaingate's log (RUST_LOG applies) to this file")
    a = p.parse_args()
    upstream = Upstream()
    sts = TokenServer(a.phase)
    listen, admin = free_port(), free_port()
    cfg = f'''listen = "127.0.0.1:{listen}"
admin_listen = "127.0.0.1:{admin}"
[log]
access_log = false
[cache]
expiry_skew = "2s"
refresh_ahead = 0.5
[domains.chaos]
token_endpoint = "http://127.0.0.1:{sts.port}/token"
client_id = "chaos"
client_secret = "chaos-secret"
allow_insecure_http = true
timeout = "1s"
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:{upstream.port}"
domain = "chaos"
'''
    path = os.path.join(tempfile.mkdtemp(), "chaos.toml"); open(path, "w").write(cfg)
    log = open(a.log, "w") if a.log else subprocess.DEVNULL
    gw = subprocess.Popen([a.binary, "run", "--config", path], stderr=log)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1); c.request("GET", "/ready")
            if c.getresponse().status == 200: break
        except OSError: pass
        time.sleep(0.05)
    # Warm the callers' tokens while the server is up (the schedule starts with "up").
    sts.started = time.time()
    warm_tokens = [f"warm-caller-{i}" for i in range(20)]
    for token in warm_tokens:
        c = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
        c.request("GET", "/warm", headers={"Authorization": f"Bearer {token}"})
        assert c.getresponse().status == 200, "warm-up failed"
    counts, lock = {}, threading.Lock()
    stop = time.time() + a.seconds

    def count(key):
        with lock: counts[key] = counts.get(key, 0) + 1

    def caller(kind):
        conn, n = None, 0
        while time.time() < stop:
            n += 1
            token = random.choice(warm_tokens) if kind in ("warm", "body") else f"cold-{threading.get_ident()}-{n}-{random.getrandbits(32)}"
            path = "/cut" if kind == "body" and n % 2 else "/"
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                r = conn.getresponse(); body = r.read()
                status = r.status
                if kind == "body" and path == "/cut" and status == 200:
                    count("body: cut response complete (unexpected)"); continue
                key = f"{kind}: {status}" + (" (on /cut)" if path == "/cut" else "")
                if status == 503 and not r.getheader("retry-after"): key += " without Retry-After"
            except http.client.IncompleteRead:
                key, conn = f"{kind}: cut mid-body (upstream reset after the head)", None
            except (OSError, http.client.HTTPException) as e:
                key, conn = f"{kind}: transport error {type(e).__name__}", None
            count(key)
            if kind == "body": time.sleep(0.05)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True)
               for k in ["warm"] * a.warm + ["cold"] * a.cold + ["body"]]
    for t in threads: t.start()
    rss0, fds0 = proc_stats(gw.pid)
    print(f"chaos: {a.seconds} s, phases of {a.phase} s: {', '.join(PHASES)}; warm {a.warm}, cold {a.cold}, body 1 thread(s)\n")
    print("| t (s) | phase | RSS (KiB) | open fds | exchanges | warm 200 | warm other | cold 200 | cold 503 | cold 504 | cold other | body: cut | body: 200 after a cut |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    t0 = time.time()
    while time.time() < stop:
        time.sleep(min(5, max(0, stop - time.time())))
        rss, fds = proc_stats(gw.pid)
        with lock: c = dict(counts)
        warm_other = sum(v for k, v in c.items() if k.startswith("warm:") and k != "warm: 200")
        cold_other = sum(v for k, v in c.items() if k.startswith("cold:") and k not in ("cold: 200", "cold: 503", "cold: 504"))
        print(f"| {time.time() - t0:.0f} | {sts.phase()} | {rss} | {fds} | {exchanges(admin)} | {c.get('warm: 200', 0)} | {warm_other} "
              f"| {c.get('cold: 200', 0)} | {c.get('cold: 503', 0)} | {c.get('cold: 504', 0)} | {cold_other} "
              f"| {c.get('body: cut mid-body (upstream reset after the head)', 0)} | {c.get('body: 200', 0)} |", flush=True)
    for t in threads: t.join(timeout=15)
    rss1, fds1 = proc_stats(gw.pid)
    gw.terminate(); code = gw.wait(timeout=40)
    print("\nanswers by class:")
    for k in sorted(counts): print(f"  {k}: {counts[k]}")
    print(f"token server calls {sts.calls}; RSS {rss0} -> {rss1} KiB; open fds {fds0} -> {fds1}; chaingate exited {code}")
    bad = [k for k in counts if (k.startswith("warm:") and k != "warm: 200")
           or (k.startswith("cold:") and k not in ("cold: 200", "cold: 503", "cold: 504"))
           or (k.startswith("body:") and k not in ("body: 200", "body: cut mid-body (upstream reset after the head)"))]
    if bad or code != 0:
        print(f"FAILED: {bad or ''} exit {code}"); sys.exit(1)


if __name__ == "__main__":
    main()
