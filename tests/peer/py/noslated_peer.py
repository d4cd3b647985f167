#!/usr/bin/env python3
"""TEST FIXTURE: plays the Noslated data plane / control plane for noslate-fc's
tests. Not Noslated.

The same fake planes as ../noslated-peer.js, but on an independent HTTP/2 +
gRPC + protobuf stack (grpcio's C core, CPython protobuf), so that noslate-fc is
not only tested against the Node.js implementation it was written for.

Protocol reference: docs/noslated-protocol.md (sections cited as §N). The Python modules
are generated from ../proto/*.proto with grpc_tools.protoc into a temporary
directory at start-up; no generated code is committed.

Usage:
  python noslated_peer.py --dp <sock> [--cp <sock>] [--events <file.jsonl>]
         [--max-concurrent-streams N] [--max-message BYTES] [--unhealthy]
         [--max-session-memory MB (accepted, ignored: Node-only setting)]

Prints one line `READY` on stdout once every socket is bound; SIGTERM/SIGINT
stop it with exit status 0. The invoke behaviours (chosen by function or
service name) and the events file format are those of the Node peer; see
../README.md. Differences: `big-fast-<n>` behaves like `big-<n>` (grpcio's
asyncio API always applies flow control to writes) and SIGUSR2 (GOAWAY and
re-bind) and `--forward-dp` (the planes as two processes) are not
implemented.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time

import grpc
import grpc_tools
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(os.path.dirname(HERE), "proto")
PROTO_FILES = [
    "common.proto",
    "rpc.proto",
    "push-server.proto",
    "data-plane.proto",
    "data-plane-broadcast.proto",
    "control-plane.proto",
]
BODY_CHUNK = 64 * 1024
DEFAULT_DEADLINE_MS = 10000


def log(*parts):
    sys.stderr.write("[noslated-peer-py %d] %s\n" % (os.getpid(), " ".join(str(p) for p in parts)))
    sys.stderr.flush()


# ------------------------------------------------------------ generated code


def load_generated_modules():
    out = tempfile.mkdtemp(prefix="noslated-peer-py-")
    try:
        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                "-I" + PROTO_DIR,
                "-I" + wkt,
                "--python_out=" + out,
                "--grpc_python_out=" + out,
            ]
            + [os.path.join(PROTO_DIR, f) for f in PROTO_FILES]
        )
        if rc != 0:
            raise SystemExit("protoc failed with status %d" % rc)
        sys.path.insert(0, out)
        import common_pb2  # noqa: F401
        import rpc_pb2
        import rpc_pb2_grpc
        import push_server_pb2
        import push_server_pb2_grpc
        import data_plane_pb2
        import data_plane_pb2_grpc
        import control_plane_pb2
        import control_plane_pb2_grpc

        return {
            "common": common_pb2,
            "rpc": rpc_pb2,
            "rpc_grpc": rpc_pb2_grpc,
            "push": push_server_pb2,
            "push_grpc": push_server_pb2_grpc,
            "dp": data_plane_pb2,
            "dp_grpc": data_plane_pb2_grpc,
            "cp": control_plane_pb2,
            "cp_grpc": control_plane_pb2_grpc,
        }
    finally:
        sys.path.remove(out) if out in sys.path else None
        shutil.rmtree(out, ignore_errors=True)


PB = load_generated_modules()
common_pb2 = PB["common"]
rpc_pb2 = PB["rpc"]
push_pb2 = PB["push"]
dp_pb2 = PB["dp"]
cp_pb2 = PB["cp"]


# ------------------------------------------------------------------ helpers


def to_obj(msg):
    """Message -> dict with exactly the fields present on the wire (presence
    kept for `optional` scalars); bytes as base64, enums as names."""
    out = {}
    for fd, value in msg.ListFields():
        out[fd.name] = _value_to_obj(fd, value)
    return out


def _value_to_obj(fd, value):
    repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
    if repeated:
        return [_scalar_to_obj(fd, v) for v in value]
    return _scalar_to_obj(fd, value)


def _scalar_to_obj(fd, v):
    if fd.type == fd.TYPE_MESSAGE:
        return to_obj(v)
    if fd.type == fd.TYPE_BYTES:
        return base64.b64encode(v).decode()
    if fd.type == fd.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(v)
        return ev.name if ev else v
    return v


def pairs(kvs):
    return [[kv.key, kv.value] for kv in kvs]


def kv_list(pair_list):
    return [common_pb2.KeyValuePair(key=k, value=str(v)) for k, v in pair_list]


def opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


def num(v):
    """JSON numbers like JS: integral doubles without a fraction."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


PATTERN = bytes((j * 31 + 7) % 251 for j in range(BODY_CHUNK + 251))


def pattern_slice(offset, length):
    start = offset % 251
    return PATTERN[start : start + length]


class Events:
    def __init__(self, path):
        self.path = os.path.abspath(path) if path else None

    def record(self, ev, **fields):
        if not self.path:
            return
        obj = {"ev": ev}
        obj.update(fields)
        obj["t"] = int(time.time() * 1000)
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


# ------------------------------------------------------------ invoke calls


class InvokeContext:
    def __init__(self, rpc, context):
        self.rpc = rpc
        self.context = context
        self.head = None
        self.body_chunks = []
        self.body_length = 0
        self.messages = 0
        self.max_chunk = 0
        self.later_fields = set()
        self.hash = hashlib.sha256()
        self.keep_body = False
        self.queue = None  # streaming chunks for echo; None marks the end
        self.first = asyncio.Event()
        self.half_closed = asyncio.Event()
        self.started_at = time.time() * 1000
        self.first_body = 0

    @property
    def name(self):
        return opt(self.head, "name") if self.head is not None else None

    @property
    def request_id(self):
        return opt(self.head, "requestId") if self.head is not None else None

    def body(self):
        return b"".join(self.body_chunks)

    async def write_head(self, status, header_pairs):
        result = push_pb2.InvokeResultResponse(status=status, headers=kv_list(header_pairs))
        await self.context.write(push_pb2.InvokeResponse(result=result))

    async def write_body(self, buf):
        if buf:
            await self.context.write(
                push_pb2.InvokeResponse(result=push_pb2.InvokeResultResponse(body=bytes(buf)))
            )

    async def write_error(self, **fields):
        await self.context.write(push_pb2.InvokeResponse(error=push_pb2.InvokeErrorResponse(**fields)))

    def grpc_deadline(self):
        remaining = self.context.time_remaining()
        if remaining is None:
            return None
        return int(time.time() * 1000 + remaining * 1000)

    def request_headers(self):
        md = self.context.invocation_metadata() or ()
        out = {}
        for k, v in md:
            out[k] = v if isinstance(v, str) else base64.b64encode(v).decode()
        return out

    def describe(self):
        h = self.head or push_pb2.InvokeRequest()
        return {
            "rpc": self.rpc,
            "name": opt(h, "name"),
            "url": opt(h, "url"),
            "method": opt(h, "method"),
            "headers": pairs(h.headers),
            "baggage": pairs(h.baggage),
            "requestId": opt(h, "requestId"),
            "deadline": num(opt(h, "deadline")),
            "debuggerTag": opt(h, "debuggerTag"),
            "hasName": h.HasField("name"),
            "hasUrl": h.HasField("url"),
            "hasMethod": h.HasField("method"),
            "hasDeadline": h.HasField("deadline"),
            "hasRequestId": h.HasField("requestId"),
            "hasDebuggerTag": h.HasField("debuggerTag"),
            "bodyLength": self.body_length,
            "bodySha256": self.hash.hexdigest(),
            "messages": self.messages,
            "maxChunk": self.max_chunk,
            "laterFields": sorted(self.later_fields),
            "grpcDeadline": self.grpc_deadline(),
            "requestHeaders": self.request_headers(),
        }

    def on_message(self, msg):
        self.messages += 1
        body = msg.body if msg.HasField("body") else b""
        if self.head is None:
            head = push_pb2.InvokeRequest()
            head.CopyFrom(msg)
            head.ClearField("body")
            self.head = head
            self.first_body = len(body)
        else:
            for fd, _ in msg.ListFields():
                if fd.name != "body":
                    self.later_fields.add(fd.name)
        if body:
            self.body_length += len(body)
            self.max_chunk = max(self.max_chunk, len(body))
            self.hash.update(body)
            if self.keep_body:
                self.body_chunks.append(body)
            if self.queue is not None:
                self.queue.put_nowait(body)


async def forever():
    await asyncio.Event().wait()


async def respond_buffered(ctx):
    body = ctx.body()
    await ctx.write_head(200, [["x-body-length", str(len(body))]])
    for off in range(0, len(body), BODY_CHUNK):
        await ctx.write_body(body[off : off + BODY_CHUNK])


def error_leave_open(make_error):
    async def run(ctx):
        await ctx.write_error(**make_error(ctx))
        await forever()

    return run


async def b_echo(ctx):
    await ctx.write_head(
        200, [["content-type", "application/octet-stream"], ["x-request-id", ctx.request_id or ""]]
    )
    while True:
        chunk = await ctx.queue.get()
        if chunk is None:
            return
        await ctx.write_body(chunk)


async def b_echo_buffered(ctx):
    await ctx.half_closed.wait()
    await respond_buffered(ctx)


async def b_inspect(ctx):
    await ctx.half_closed.wait()
    await ctx.write_head(200, [["content-type", "application/json"]])
    await ctx.write_body(json.dumps(ctx.describe(), separators=(",", ":")).encode())


async def b_error_after_head(ctx):
    await ctx.write_head(200, [["content-type", "text/plain"]])
    await ctx.write_body(b"part1")
    await ctx.write_body(b"part2")
    await ctx.write_error(name="Error", message="peer reset stream")


async def b_grpc_error(ctx):
    await ctx.context.abort(grpc.StatusCode.UNAVAILABLE, "plane unavailable")


async def b_never(ctx):
    await forever()


async def b_crash(ctx):
    log("crash: exiting with status 1")
    os._exit(1)


async def b_early(ctx):
    await ctx.write_head(200, [["content-type", "text/plain"]])
    await ctx.write_body(b"early")


def queue_timeout_error(ctx):
    deadline = opt(ctx.head, "deadline")
    if deadline is None:
        deadline = ctx.started_at + DEFAULT_DEADLINE_MS
    request_id = ctx.request_id if ctx.request_id is not None else "unknown"
    return dict(
        name="Error",
        message="Waiting for worker has timed out at %s, request(%s)." % (js_number(deadline), request_id),
        code=4,
    )


def js_number(v):
    v = num(v)
    return str(v) if isinstance(v, int) else repr(v)


BEHAVIOURS = {
    "echo": b_echo,
    "echo-buffered": b_echo_buffered,
    "inspect": b_inspect,
    "error-before-head": error_leave_open(
        lambda ctx: dict(
            name="NoslatedError",
            message="Noslated request failed: CanonicalCode::INTERNAL_ERROR request kind(Trigger), boom",
            operation="Trigger",
            code=1,
            stack="Error: boom\n    at peer",
        )
    ),
    "head-timeout": error_leave_open(
        lambda ctx: dict(
            name="NoslatedError",
            message="Noslated request failed: CanonicalCode::TIMEOUT request kind(Trigger), Request Timeout",
            operation="Trigger",
            code=2,
            stack="NoslatedError: Request Timeout\n    at peer",
        )
    ),
    "rate-limit": error_leave_open(lambda ctx: dict(name="Error", message="rate limit exceeded", code=8)),
    "circuit-breaker": error_leave_open(
        lambda ctx: dict(name="Error", message="System circuit breaker opened.", code=9)
    ),
    "no-worker": error_leave_open(
        lambda ctx: dict(name="Error", message="No available worker process for %s now." % ctx.name)
    ),
    "queue-timeout": error_leave_open(queue_timeout_error),
    "not-found": error_leave_open(
        lambda ctx: dict(
            name="Error", message="No function named %s registered in this node." % ctx.name, code=5
        )
    ),
    "error-after-head": b_error_after_head,
    "grpc-error": b_grpc_error,
    "never": b_never,
    "crash": b_crash,
    "early": b_early,
}
KEEPS_BODY = {"echo-buffered"}


def behaviour_for(name):
    """Returns (coroutine function, keep_body, streams_chunks)."""
    if name in BEHAVIOURS:
        return BEHAVIOURS[name], name in KEEPS_BODY, name == "echo"
    m = re.fullmatch(r"status-(\d{1,3})", name or "")
    if m:
        code = int(m.group(1))

        async def run(ctx):
            await ctx.half_closed.wait()
            await ctx.write_head(code, [["x-custom", "1"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]])
            await ctx.write_body(("status %d" % code).encode())

        return run, False, False
    m = re.fullmatch(r"big-(fast-)?(\d+)", name or "")
    if m:
        n = int(m.group(2))

        async def run(ctx):
            await ctx.write_head(
                200, [["content-type", "application/octet-stream"], ["x-body-length", str(n)]]
            )
            off = 0
            while off < n:
                length = min(BODY_CHUNK, n - off)
                await ctx.write_body(pattern_slice(off, length))
                off += length
            await ctx.half_closed.wait()

        return run, False, False
    m = re.fullmatch(r"slow-(\d+)", name or "")
    if m:
        ms = int(m.group(1))

        async def run(ctx):
            await ctx.half_closed.wait()
            wait = ctx.started_at + ms - time.time() * 1000
            if wait > 0:
                await asyncio.sleep(wait / 1000)
            await respond_buffered(ctx)

        return run, True, False
    return BEHAVIOURS["not-found"], False, False


def service_function(service_name):
    """The function a service profile selects (section 10), or None."""
    items = [p for p in STATE.service_profiles if p.name == service_name]
    if not items:
        return None
    item = items[-1]

    def fn_of(kvs):
        return next((kv.value for kv in kvs if kv.key == "functionName"), None)

    if item.type == "proportional-load-balance":
        if not item.selectors:
            return None
        r = random.random()
        total = 0.0
        for sel in item.selectors:
            total += sel.proportion
            if r < total:
                return fn_of(sel.selector)
        return fn_of(item.selectors[-1].selector)
    return fn_of(item.selector)


def resolve_behaviour(rpc, name):
    """As the real data plane: a service through the service profiles, then the
    function through the profiles this data plane holds (code 5 otherwise)."""
    fn = name
    if rpc == "invokeService":
        fn = service_function(name)
        if fn is None:
            return error_leave_open(lambda ctx: dict(name="Error", message="Service not found.", code=5)), False, False
    if not any(p.name == fn for p in STATE.dp_profiles):
        message = "No function named %s registered in this node." % fn
        return error_leave_open(lambda ctx: dict(name="Error", message=message, code=5)), False, False
    return behaviour_for(fn)


class PushServer:
    def __init__(self, events):
        self.events = events

    async def invoke(self, request_iterator, context):
        await self._handle("invoke", request_iterator, context)

    async def invokeService(self, request_iterator, context):
        await self._handle("invokeService", request_iterator, context)

    async def _handle(self, rpc, request_iterator, context):
        ctx = InvokeContext(rpc, context)
        events = self.events
        behaviour = {}

        recorded = []

        def record_cancelled(reason):
            if recorded:
                return
            recorded.append(reason)
            events.record(
                "cancelled",
                rpc=rpc,
                name=ctx.name,
                requestId=ctx.request_id,
                reason=reason,
                bytes=ctx.body_length,
            )


        async def read_loop():
            try:
                async for msg in request_iterator:
                    first = ctx.head is None
                    if first:
                        # decide before the body of this message is counted
                        name = msg.name if msg.HasField("name") else None
                        run, keep, streams = resolve_behaviour(rpc, name)
                        behaviour["run"] = run
                        ctx.keep_body = keep
                        if streams:
                            ctx.queue = asyncio.Queue()
                    ctx.on_message(msg)
                    if first:
                        h = ctx.head
                        events.record(
                            "invoke",
                            rpc=rpc,
                            name=opt(h, "name"),
                            url=opt(h, "url"),
                            method=opt(h, "method"),
                            headers=pairs(h.headers),
                            baggage=pairs(h.baggage),
                            requestId=opt(h, "requestId"),
                            deadline=num(opt(h, "deadline")),
                            hasDeadline=h.HasField("deadline"),
                            hasMethod=h.HasField("method"),
                            hasUrl=h.HasField("url"),
                            hasRequestId=h.HasField("requestId"),
                            debuggerTag=opt(h, "debuggerTag"),
                            firstBodyBytes=ctx.first_body,
                            grpcDeadline=ctx.grpc_deadline(),
                            requestHeaders=ctx.request_headers(),
                        )
                        ctx.first.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the call went away
                log("%s read ended: %r" % (rpc, err))
                return
            events.record(
                "invoke-end",
                rpc=rpc,
                name=ctx.name,
                requestId=ctx.request_id,
                bytes=ctx.body_length,
                messages=ctx.messages,
                laterFields=sorted(ctx.later_fields),
            )
            ctx.half_closed.set()
            if ctx.queue is not None:
                ctx.queue.put_nowait(None)

        reader = asyncio.ensure_future(read_loop())
        try:
            first_wait = asyncio.ensure_future(ctx.first.wait())
            await asyncio.wait({first_wait, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not ctx.first.is_set():
                # half-close before any message: wait for a head forever (§7.1)
                first_wait.cancel()
                await forever()
            await behaviour["run"](ctx)
        except asyncio.CancelledError:
            # grpcio cancels the handler task when the client resets the
            # stream or the gRPC deadline passes.
            remaining = context.time_remaining()
            record_cancelled("deadline" if remaining is not None and remaining <= 0 else "cancelled")
            raise
        finally:
            if not reader.done():
                reader.cancel()


# ---------------------------------------------------------- other services


class State:
    def __init__(self, unhealthy, services, profile_delay_ms, events):
        self.dp_healthy = not unhealthy
        self.cp_profiles = []
        self.dp_profiles = []
        self.service_profiles = [
            dp_pb2.FunctionService(
                name=name, type="default", selector=[common_pb2.KeyValuePair(key="functionName", value=fn)]
            )
            for name, fn in services
        ]
        self.platform_envs = []
        self.profile_delay = profile_delay_ms / 1000.0
        self.events = events
        self.forwards = None  # the chain of forwards, kept in order

    def dp_apply(self, profiles, forwarded):
        self.dp_profiles = profiles
        self.events.record(
            "profiles-applied", plane="dp", forwarded=forwarded, names=[opt(p, "name") for p in profiles]
        )

    def forward(self):
        """The control plane forwards its list to the data plane (section 8.1;
        only in one process here). Returns the forward's future: with
        --profile-delay 0 the caller awaits it before `set: true`, as Noslated
        does; with a delay it answers at once and the forward comes later."""
        profiles = list(self.cp_profiles)
        before = self.forwards

        async def later():
            if before is not None:
                await before
            await asyncio.sleep(self.profile_delay)
            self.dp_apply(profiles, True)

        self.forwards = asyncio.ensure_future(later())
        return self.forwards


STATE = None


def liveness_chunk():
    now = int(time.time() * 1000) & 0xFFFFFFFF
    data = rpc_pb2.LivenessProbeEventData(
        timestamp=now, component_liveness=common_pb2.KeyValuePair(key="host", value="ok")
    ).SerializeToString()
    return rpc_pb2.SubscriptionChunk(
        timestamp=now,
        events=[
            rpc_pb2.SubscriptionEvent(
                name="host.liveness",
                data=common_pb2.Any(typeUrl="noslated.LivenessProbeEventData", data=data),
            )
        ],
    )


class Host:
    def __init__(self, plane, events):
        self.plane = plane
        self.events = events

    async def connect(self, request_iterator, context):
        plane = self.plane
        self.events.record("connect", plane=plane)
        try:
            await self._serve(plane, request_iterator, context)
        except asyncio.CancelledError:
            self.events.record("connect-closed", plane=plane)
            raise

    async def _serve(self, plane, request_iterator, context):
        await context.write(liveness_chunk())
        async for req in request_iterator:
            if req.type == rpc_pb2.LIVENESS_PROBE:
                await context.write(liveness_chunk())
            elif req.type == rpc_pb2.SUBSCRIBE:
                sub = req.subscription
                self.events.record(
                    "subscribe",
                    plane=plane,
                    eventName=opt(sub, "eventName"),
                    subscribe=sub.subscribe,
                )


def health(plane, state):
    if plane == "dp":
        if state.dp_healthy:
            return common_pb2.PlaneHealthyResponse(name="DataPlane", health=True)
        return common_pb2.PlaneHealthyResponse(name="DataPlane", health=False, reason="Circuit Breaker Enabled")
    return common_pb2.PlaneHealthyResponse(name="ControlPlane", health=True)


def record_profiles(events, plane, request):
    events.record(
        "setFunctionProfile",
        plane=plane,
        profiles=[to_obj(p) for p in request.profiles],
        mode=opt(request, "mode"),
        hasMode=request.HasField("mode"),
    )


class DataPlane:
    def __init__(self, events, state):
        self.events = events
        self.state = state

    async def checkHealth(self, request, context):
        self.events.record("checkHealth", plane="dp")
        return health("dp", self.state)

    async def setServiceProfiles(self, request, context):
        self.state.service_profiles = list(request.profiles)
        self.events.record("setServiceProfiles", plane="dp", profiles=[to_obj(p) for p in request.profiles])
        return common_pb2.Empty()

    async def getServiceProfiles(self, request, context):
        return dp_pb2.ServiceProfilesAccessor(profiles=self.state.service_profiles)

    async def useInspector(self, request, context):
        self.events.record(
            "useInspector", plane="dp", funcName=opt(request, "funcName"), use=opt(request, "use")
        )
        return common_pb2.Empty()

    async def setFunctionProfile(self, request, context):
        record_profiles(self.events, "dp", request)
        self.state.dp_apply(list(request.profiles), False)
        return common_pb2.SetFunctionProfileResponse(set=True)


class ControlPlane:
    def __init__(self, events, state):
        self.events = events
        self.state = state

    async def setFunctionProfile(self, request, context):
        record_profiles(self.events, "cp", request)
        self.state.cp_profiles = list(request.profiles)
        if self.state.has_dp:
            forwarded = self.state.forward()
            if self.state.profile_delay == 0:
                await forwarded
        return common_pb2.SetFunctionProfileResponse(set=True)

    async def getFunctionProfile(self, request, context):
        self.events.record("getFunctionProfile", plane="cp")
        return cp_pb2.GetFunctionProfileResponse(profiles=self.state.cp_profiles)

    async def setPlatformEnvironmentVariables(self, request, context):
        self.state.platform_envs = list(request.envs)
        self.events.record("setPlatformEnvironmentVariables", plane="cp", envs=[to_obj(e) for e in request.envs])
        return cp_pb2.SetPlatformEnvironmentVariablesResponse(set=True)

    async def checkHealth(self, request, context):
        self.events.record("checkHealth", plane="cp")
        return health("cp", self.state)

    async def getWorkerStatsSnapshot(self, request, context):
        return cp_pb2.WorkerStatsSnapshotResponse(
            brokers=[cp_pb2.BrokerStats(name=p.name, profile=p) for p in self.state.cp_profiles]
        )


# ------------------------------------------------------------------ servers


def remove_stale(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def main():
    ap = argparse.ArgumentParser(description="TEST FIXTURE: fake Noslated planes (grpcio)")
    ap.add_argument("--dp")
    ap.add_argument("--cp")
    ap.add_argument("--events")
    ap.add_argument("--max-concurrent-streams", type=int)
    ap.add_argument("--max-session-memory", type=float, default=10, help="accepted and ignored (Node-only)")
    ap.add_argument("--max-message", type=int, default=10485760)
    ap.add_argument("--unhealthy", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--profile-delay", type=float, default=0, help="ms from set:true to the data plane knowing")
    ap.add_argument("--service", action="append", default=[], help="NAME=FUNCTION service profile")
    args = ap.parse_args()
    if not args.dp and not args.cp:
        ap.error("give --dp and/or --cp")
    services = []
    for item in args.service:
        name, eq, fn = item.partition("=")
        if not name or not eq or not fn:
            ap.error("bad --service (want NAME=FUNCTION): %s" % item)
        services.append((name, fn))

    global STATE
    events = Events(args.events)
    state = State(args.unhealthy, services, args.profile_delay, events)
    state.has_dp = bool(args.dp)
    STATE = state
    options = [
        ("grpc.max_receive_message_length", args.max_message),
        ("grpc.max_send_message_length", args.max_message),
    ]
    if args.max_concurrent_streams is not None:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))

    planes = []
    for plane, sock in (("dp", args.dp), ("cp", args.cp)):
        if not sock:
            continue
        sock = os.path.abspath(sock)
        remove_stale(sock)
        server = grpc.aio.server(options=options)
        PB["rpc_grpc"].add_HostServicer_to_server(Host(plane, events), server)
        if plane == "dp":
            PB["dp_grpc"].add_DataPlaneServicer_to_server(DataPlane(events, state), server)
            PB["push_grpc"].add_PushServerServicer_to_server(PushServer(events), server)
        else:
            PB["cp_grpc"].add_ControlPlaneServicer_to_server(ControlPlane(events, state), server)
        if not server.add_insecure_port("unix:" + sock):
            raise SystemExit("cannot bind unix:" + sock)
        await server.start()
        log("%s listening on unix:%s" % (plane, sock))
        planes.append((plane, sock, server))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await stop.wait()
    log("shutting down")
    for _plane, sock, server in planes:
        await server.stop(0)
        remove_stale(sock)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
