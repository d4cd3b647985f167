#!/usr/bin/env python3
"""Where noslate-fc still allocates per invoke: a dhat (valgrind) run.

Builds noslate-fc with line tables, runs it under `valgrind --tool=dhat`
against the grpc-js TEST FIXTURE (tests/peer), makes keep-alive invokes of
64 B and 64 KiB, Content-Length and chunked (the cases of tests/alloc.rs),
and prints the allocation sites whose block count grows with the number of
invokes: each is run twice (N and 2N invokes) and the difference divided by
N, so start-up and warm-up allocations cancel out.

    scripts/alloc-sites.py [N]      (default 500; needs `npm ci` in tests/peer)
"""
import json
import re
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH = int(os.environ.get("DEPTH", "5"))
# Allocator, standard library and valgrind frames: not where the decision was made.
NOT_OURS = r"vg_replace_malloc|library/(alloc|core|std)/|\(in /|/\.cargo/registry/|^0x[0-9A-F]+: (main|__libc)"
TARGET = os.path.join(ROOT, "target", "alloc-sites")


def build():
    env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG="line-tables-only", CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "noslate-fc"], cwd=ROOT, env=env, check=True)
    return os.path.join(TARGET, "release", "noslate-fc")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def invoke_all(port, n):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    for size in (64, 64 * 1024):
        body = bytes((i * 31 + 7) % 251 for i in range(size))
        for chunked in (False, True):
            for _ in range(n):
                headers = {"x-noslate-function": "echo"}
                if chunked:
                    parts = iter([body[: size // 2], body[size // 2 :]])
                    conn.request("POST", "/invoke", body=parts, headers=headers, encode_chunked=True)
                else:
                    conn.request("POST", "/invoke", body=body, headers=headers)
                r = conn.getresponse()
                got = r.read()
                if r.status != 200 or got != body:
                    sys.exit(f"bad answer: {r.status}, {len(got)} bytes")
    conn.close()


def run(binary, tmp, n):
    socks = os.path.join(tmp, "socks")
    os.makedirs(socks, exist_ok=True)
    peer = subprocess.Popen(
        ["node", os.path.join(ROOT, "tests/peer/noslated-peer.js"),
         "--dp", os.path.join(socks, "dp-0.sock"), "--cp", os.path.join(socks, "cp-0.sock"),
         "--events", os.path.join(tmp, "events.jsonl"),
         # The fixture serves only functions it was told of (like Noslated).
         "--known", "echo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while peer.stdout.readline().strip() != "READY":
            if peer.poll() is not None:
                sys.exit("the fixture did not start")
        port = free_port()
        out = os.path.join(tmp, f"dhat-{n}.json")
        env = {"PATH": os.environ["PATH"], "SERVER_PORT": str(port), "NOSLATE_FC_LISTEN": "127.0.0.1",
               "NOSLATE_FC_TRUSTED_PEERS": "any", "NOSLATE_FC_SOCK_DIR": socks}
        fc = subprocess.Popen(["valgrind", "--tool=dhat", "--read-inline-info=yes", f"--dhat-out-file={out}", binary], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("noslate-fc did not listen")
                    time.sleep(0.2)
            invoke_all(port, 50)  # warm-up, same in both runs
            invoke_all(port, n)
        finally:
            fc.send_signal(signal.SIGTERM)
            fc.wait(timeout=60)
        return out
    finally:
        peer.kill()
        peer.wait()


def sites(path):
    with open(path) as f:
        d = json.load(f)
    ftbl = d["ftbl"]
    result = {}
    for pp in d["pps"]:
        frames = [ftbl[i] for i in pp["fs"]]
        # The first frame that is ours names the site; keep a short stack.
        ours = [re.sub(r"^0x[0-9A-F]+: ", "", f) for f in frames if not re.search(NOT_OURS, f)]
        key = "\n      ".join(ours[:DEPTH]) if ours else frames[0] if frames else "?"
        blocks, total = result.get(key, (0, 0))
        result[key] = (blocks + pp["tbk"], total + pp["tb"])
    return result


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    binary = build()
    with tempfile.TemporaryDirectory(prefix="alloc-sites-") as tmp:
        a = sites(run(binary, tmp, n))
        b = sites(run(binary, tmp, 2 * n))
    invokes = 4 * n
    rows = []
    for key in set(a) | set(b):
        blocks = (b.get(key, (0, 0))[0] - a.get(key, (0, 0))[0]) / invokes
        size = (b.get(key, (0, 0))[1] - a.get(key, (0, 0))[1]) / invokes
        if blocks > 0.01:
            rows.append((blocks, size, key))
    rows.sort(reverse=True)
    print(f"allocations per invoke (mean over the 4 cases): {sum(r[0] for r in rows):.2f}")
    for blocks, size, key in rows:
        print(f"{blocks:6.2f} blocks {size:9.0f} B  {key}")


if __name__ == "__main__":
    main()
