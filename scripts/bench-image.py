#!/usr/bin/env python3
"""The image's numbers for BENCHMARKS.md, side by side with the seed's way
(start.sh + express + NoslatedClient, the Dockerfile's `seed` target) on the
same base: image size, `podman run` -> first successful invoke (median of N,
the two images alternating), and the container's memory (its cgroup's usage)
at idle after /initialize and after 10,000 invokes.

    scripts/bench-image.py IMAGE SEED_IMAGE [--runs 5] [--invokes 10000]

Both images from `scripts/image.sh build` and `scripts/image.sh build seed`;
podman runs with the containers.conf of `scripts/image.sh conf`, the port on
loopback only and --memory 512m, as tests/image.rs runs it. Every container
is removed by name at the end.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = subprocess.run(["bash", os.path.join(HERE, "image.sh"), "conf"], check=True,
                      capture_output=True, text=True).stdout.strip()
ENV = dict(os.environ, CONTAINERS_CONF=CONF)


def podman(*args, check=True):
    r = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"podman {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def run(image, name):
    podman("rm", "-f", "-t", "0", name, check=False)
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "--memory", "512m", "-p", "127.0.0.1::9000", image)
    port = int(podman("port", name, "9000/tcp").rsplit(":", 1)[1])
    return t0, port


def post(port, path, body, headers, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


INVOKE = {"x-fc-control-path": "/invoke", "x-fc-request-id": "b-1", "content-type": "application/octet-stream"}


def first_invoke(image, name):
    """Seconds from `podman run` to the 200 echo of ONE invoke, sent as FC
    sends it: once the port accepts, no /initialize, no retry. Only a refused
    connect (the port not open yet) is tried again; any answer but the echo,
    or a cut connection, fails the bench."""
    t0, port = run(image, name)
    deadline = t0 + 120
    while time.monotonic() < deadline:
        try:
            status, data = post(port, "/invoke", b"hello", INVOKE, timeout=60)
        except ConnectionRefusedError:
            time.sleep(0.02)
            continue
        except (OSError, http.client.HTTPException) as e:
            sys.exit(f"{image}: the first invoke failed: {e!r}")
        if status == 200 and data == b"hello":
            return time.monotonic() - t0
        sys.exit(f"{image}: the first invoke got {status} {data[:200]!r}")
    sys.exit(f"{image}: the port did not accept within 120 s")


def usage_mib(name):
    """The container's cgroup memory usage (v1 or v2), read inside it."""
    out = podman("exec", name, "sh", "-c",
                 "cat /sys/fs/cgroup/memory.current 2>/dev/null || cat /sys/fs/cgroup/memory/memory.usage_in_bytes")
    return int(out) / 2**20


def memory(image, name, invokes):
    _, port = run(image, name)
    deadline = time.monotonic() + 120
    while True:  # only until the port accepts; one /initialize, which must be 200
        try:
            status, data = post(port, "/initialize", b"", {"x-fc-control-path": "/initialize",
                                                            "x-fc-request-id": "init-1",
                                                            "x-fc-initialization-timeout": "60"}, timeout=90)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                sys.exit(f"{image}: the port did not accept within 120 s")
            time.sleep(0.1)
            continue
        if status != 200:
            sys.exit(f"{image}: /initialize got {status} {data[:200]!r}")
        break
    time.sleep(3)
    idle = usage_mib(name)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = b"x" * 1024
    failed = []
    t = time.monotonic()
    for i in range(invokes):
        try:
            c.request("POST", "/invoke", body=body, headers=dict(INVOKE, **{"x-fc-request-id": f"m-{i}"}))
            r = c.getresponse()
            data = r.read()
            ok = r.status == 200 and data == body
            why = f"{r.status} {data[:120]!r}"
        except (OSError, http.client.HTTPException) as e:
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            ok, why = False, repr(e)
        if not ok:
            failed.append(f"{i}: {why}")
    took = time.monotonic() - t
    time.sleep(3)
    after = usage_mib(name)
    podman("rm", "-f", "-t", "0", name)
    if failed:
        print(f"{image}: {len(failed)} of {invokes} invokes failed, first: {failed[0]}, last: {failed[-1]}",
              file=sys.stderr)
    return idle, after, took, len(failed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("seed")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--invokes", type=int, default=10000)
    a = ap.parse_args()
    images = {"noslate-fc": a.image, "seed": a.seed}
    out = {"load_before": open("/proc/loadavg").read().split()[:3]}
    for k, img in images.items():
        out[f"{k}_size_mb"] = round(int(podman("image", "inspect", "--format", "{{.Size}}", img)) / 1e6, 1)
    starts = {k: [] for k in images}
    for i in range(a.runs):
        for k, img in images.items():
            name = f"bench-image-{k}-{os.getpid()}"
            starts[k].append(first_invoke(img, name))
            podman("rm", "-f", "-t", "0", name)
    print(json.dumps(starts), file=sys.stderr)
    for k in images:
        out[f"{k}_first_invoke_s"] = [round(s, 3) for s in starts[k]]
        out[f"{k}_first_invoke_median_s"] = round(statistics.median(starts[k]), 3)
    for k, img in images.items():
        idle, after, took, failed = memory(img, f"bench-image-mem-{k}-{os.getpid()}", a.invokes)
        out[f"{k}_failed_of_{a.invokes}"] = failed
        out[f"{k}_idle_mib"] = round(idle, 1)
        out[f"{k}_after_{a.invokes}_mib"] = round(after, 1)
        out[f"{k}_{a.invokes}_invokes_s"] = round(took, 1)
    out["load_after"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
