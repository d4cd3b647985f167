#!/usr/bin/env python3
"""Start-up time and idle memory of a noslate-fc binary (no planes running).

Usage: scripts/measure-idle.py [BINARY] [RUNS]
Reports exec -> first HTTP response (a GET /pre-freeze on a fresh connection)
and VmRSS after one request, over RUNS starts. Loopback only.
"""
import os, socket, statistics, subprocess, sys, time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/x86_64-unknown-linux-gnu/release/noslate-fc"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
times, rss = [], []
for i in range(runs):
    port = 19400 + i
    env = dict(os.environ, SERVER_PORT=str(port), NOSLATE_FC_LISTEN="127.0.0.1",
               NOSLATE_FC_SOCK_DIR="/tmp/nfc-measure-none")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = start + 5
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /pre-freeze HTTP/1.1\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                if time.perf_counter() > deadline:
                    raise SystemExit("no answer within 5 s")
                time.sleep(0.0001)
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.2)
        with open(f"/proc/{proc.pid}/status") as f:
            rss.append(int(next(l for l in f if l.startswith("VmRSS:")).split()[1]))
    finally:
        proc.kill()
        proc.wait()
print(f"binary {binary} ({os.path.getsize(binary)} bytes), {runs} starts")
print(f"exec -> first response: median {statistics.median(times):.2f} ms, min {min(times):.2f} ms, max {max(times):.2f} ms")
print(f"idle VmRSS: median {statistics.median(rss)} KiB, max {max(rss)} KiB")
