"""Real-client checks against noslate-fc, driven by tests/clients.rs.

usage: client.py (urllib|requests) <port> <port-big>

<port> runs with a 4 MiB body limit (so 8 MiB gets 413), <port-big> with the
default limit (8 MiB to an unknown function gets the data plane's 404). Prints
one line per check: "RESULT <client> <check> ok|FAIL <detail>".
"""

import http.client
import sys
import urllib.error
import urllib.request

CLIENT, PORT, PORT_BIG = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
MIB = 1024 * 1024


def pattern(n):
    # What the fixture's big-<n> sends: byte i = (i*31 + 7) % 251 (period 251).
    period = bytes((i * 31 + 7) % 251 for i in range(251))
    return (period * (n // 251 + 1))[:n]


def body(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def report(check, ok, detail=""):
    print(f"RESULT {CLIENT} {check} {'ok' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def url(port=PORT):
    return f"http://127.0.0.1:{port}/invoke"


def chunks(data, size=100_000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


# ---------------------------------------------------------------- urllib
def u_post(data, function="echo", port=PORT, headers=None):
    h = {"x-noslate-function": function, "content-type": "application/octet-stream"}
    h.update(headers or {})
    req = urllib.request.Request(url(port), data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def run_urllib():
    yield "echo-small", lambda: u_post(b"hello urllib") == (200, b"hello urllib")
    big = body(MIB)
    yield "echo-1MiB", lambda: u_post(big) == (200, big)
    # An iterable without a length: urllib sends Transfer-Encoding: chunked.
    yield "echo-chunked", lambda: u_post(chunks(big)) == (200, big)

    def reuse():
        # urllib opens a connection per request; its engine, http.client,
        # keeps one: five requests on one socket.
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        names = set()
        for i in range(5):
            data = f"reuse {i}".encode()
            conn.request("POST", "/invoke", body=data, headers={"x-noslate-function": "echo"})
            r = conn.getresponse()
            if (r.status, r.read()) != (200, data):
                return False
            names.add(conn.sock.getsockname())
        conn.close()
        return len(names) == 1

    yield "keep-alive", reuse
    eight = body(8 * MIB)
    yield "413-8MiB", lambda: u_post(eight)[0] == 413
    yield "404-8MiB", lambda: u_post(eight, function="no-such-function", port=PORT_BIG)[0] == 404
    n = 3 * MIB + 5
    yield "streamed", lambda: u_post(b"", function=f"big-{n}") == (200, pattern(n))


# ---------------------------------------------------------------- requests
def run_requests():
    import requests

    s = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)
    s.mount("http://", adapter)
    hdr = {"x-noslate-function": "echo"}

    def post(data, function="echo", port=PORT, **kw):
        r = s.post(url(port), data=data, headers={"x-noslate-function": function}, timeout=30, **kw)
        return r.status_code, r.content

    yield "echo-small", lambda: post(b"hello requests") == (200, b"hello requests")
    big = body(MIB)
    yield "echo-1MiB", lambda: post(big) == (200, big)
    yield "echo-chunked", lambda: post(chunks(big)) == (200, big)

    def reuse():
        fresh = requests.Session()
        fresh.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1))
        for i in range(5):
            data = f"reuse {i}".encode()
            r = fresh.post(url(), data=data, headers=hdr, timeout=30)
            if (r.status_code, r.content) != (200, data):
                return False
        pools = list(fresh.get_adapter(url()).poolmanager.pools._container.values())
        return len(pools) == 1 and pools[0].num_connections == 1

    yield "keep-alive", reuse
    eight = body(8 * MIB)
    yield "413-8MiB", lambda: post(eight)[0] == 413
    yield "404-8MiB", lambda: post(eight, function="no-such-function", port=PORT_BIG)[0] == 404

    def streamed():
        n = 3 * MIB + 5
        r = s.post(url(), data=b"", headers={"x-noslate-function": f"big-{n}"}, stream=True, timeout=30)
        got = b"".join(r.iter_content(65536))
        return r.status_code == 200 and got == pattern(n)

    yield "streamed", streamed


checks = run_urllib() if CLIENT == "urllib" else run_requests()
for name, check in checks:
    try:
        ok = check()
        report(name, ok, "" if ok else "wrong status or bytes")
    except Exception as e:  # the point: a reset shows up here
        report(name, False, f"{type(e).__name__}: {e}".replace("\n", " ")[:200])
