#!/usr/bin/env node
/*
 * TEST FIXTURE: plays the Noslated data plane / control plane for noslate-fc's
 * tests. Not Noslated.
 *
 * A gRPC server on @grpc/grpc-js 1.8.8 (the version Noslated 0.25 uses) that
 * serves, on unix sockets, the services a Noslated client talks to:
 *
 *   --dp <sock>  noslated.Host, noslated.data.DataPlane, noslated.data.PushServer
 *   --cp <sock>  noslated.Host, noslated.control.ControlPlane
 *
 * Strict on names, like Noslated: the data plane answers code 5 `No function
 * named <name> registered in this node.` for any function it does not know.
 * It learns functions only from DataPlane/setFunctionProfile, which the
 * control plane calls (forwards): before it answers the client's
 * ControlPlane/setFunctionProfile with `set: true`, as Noslated does, or,
 * with --profile-delay MS, MS after it (a window where code 5 still comes). The two
 * planes may run in one process (both flags: forwarded in-process) or in two
 * (`--cp <sock> --forward-dp <dp sock>` in the second: forwarded over gRPC,
 * and re-sent whenever the data plane (re)connects, as Noslated does).
 *
 * Protocol reference: docs/noslated-protocol.md (sections cited
 * below as §N). Message schemas: ./proto/*.proto (reconstructed from §6).
 *
 * The response of PushServer.invoke / invokeService is chosen by the function
 * (or service) NAME in the first InvokeRequest; see BEHAVIOURS below and
 * README.md. Everything a test may want to assert is appended, one JSON object
 * per line, to the --events file (fs.appendFileSync, so a line is on disk
 * before the peer answers).
 *
 * Usage:
 *   node noslated-peer.js --dp <sock> [--cp <sock>] [--events <file.jsonl>]
 *        [--max-concurrent-streams N] [--max-session-memory MB (10)]
 *        [--max-message BYTES (10485760)] [--unhealthy] [--unhealthy-checks N] [--verbose]
 *        [--forward-dp <sock>] [--profile-delay MS (0)] [--service NAME=FUNCTION]...
 *        [--known FUNCTION]...
 *
 * Prints exactly one line `READY` on stdout once every socket is bound.
 * SIGTERM / SIGINT: shut down and exit 0.
 * SIGUSR2: graceful restart of every plane: server.tryShutdown() on the old
 *   server (GOAWAY to every session, listener closed, in-flight calls may
 *   finish), then a NEW server is bound on the same socket path(s) so new
 *   connections work at once. Prints `REBOUND` on stdout and records
 *   {"ev":"rebound"} when the new servers are listening.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.join(__dirname, 'proto');
const PROTO_FILES = [
  'common.proto',
  'rpc.proto',
  'push-server.proto',
  'data-plane.proto',
  'data-plane-broadcast.proto',
  'control-plane.proto',
];
/* defaults:false + optional scalars => a decoded object has a key exactly
 * when the field was on the wire (even as 0 / "" / false). oneofs:false keeps
 * the synthetic `_field` oneof keys of proto3 `optional` out of the objects.
 * bytes fields decode to Buffers (protobufjs' default in Node). */
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  arrays: false,
  oneofs: false,
  includeDirs: [PROTO_DIR],
};

/** Response body chunk size for buffered / generated responses. */
const BODY_CHUNK = 64 * 1024;
/** Noslated's default request deadline when the head has none (§6.4, §8). */
const DEFAULT_DEADLINE_MS = 10000;

// ---------------------------------------------------------------- arguments

function usage(code) {
  process.stderr.write(
    'usage: node noslated-peer.js --dp <sock> [--cp <sock>] [--events <file.jsonl>]\n' +
      '       [--max-concurrent-streams N] [--max-session-memory MB] [--max-message BYTES]\n' +
      '       [--unhealthy] [--verbose] [--forward-dp <sock>] [--profile-delay MS]\n' +
      '       [--service NAME=FUNCTION]... [--known FUNCTION]...\n',
  );
  process.exit(code);
}

function parseArgs(argv) {
  const opts = {
    dp: null,
    cp: null,
    events: null,
    maxConcurrentStreams: null,
    maxSessionMemory: 10,
    maxMessage: 10485760,
    unhealthy: false,
    verbose: false,
    forwardDp: null,
    profileDelay: 0,
    unhealthyChecks: 0,
    services: [],
    known: [],
  };
  const valued = {
    '--dp': 'dp',
    '--cp': 'cp',
    '--events': 'events',
    '--max-concurrent-streams': 'maxConcurrentStreams',
    '--max-session-memory': 'maxSessionMemory',
    '--max-message': 'maxMessage',
    '--forward-dp': 'forwardDp',
    '--profile-delay': 'profileDelay',
    '--unhealthy-checks': 'unhealthyChecks',
    '--service': 'services',
    '--known': 'known',
  };
  const numeric = new Set(['maxConcurrentStreams', 'maxSessionMemory', 'maxMessage', 'profileDelay', 'unhealthyChecks']);
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === '--unhealthy') opts.unhealthy = true;
    else if (arg === '--verbose') opts.verbose = true;
    else if (arg === '--help' || arg === '-h') usage(0);
    else if (valued[arg]) {
      if (value === undefined) {
        if (i + 1 >= argv.length) usage(2);
        value = argv[++i];
      }
      const key = valued[arg];
      if (numeric.has(key)) {
        const n = Number(value);
        if (!Number.isFinite(n) || n < 0) {
          process.stderr.write(`bad number for ${arg}: ${value}\n`);
          usage(2);
        }
        opts[key] = n;
      } else if (key === 'services') {
        const eqAt = value.indexOf('=');
        if (eqAt <= 0 || eqAt === value.length - 1) {
          process.stderr.write(`bad --service (want NAME=FUNCTION): ${value}\n`);
          usage(2);
        }
        opts.services.push({ name: value.slice(0, eqAt), functionName: value.slice(eqAt + 1) });
      } else if (key === 'known') {
        opts.known.push(value);
      } else {
        opts[key] = value;
      }
    } else {
      process.stderr.write(`unknown argument: ${arg}\n`);
      usage(2);
    }
  }
  if (!opts.dp && !opts.cp) usage(2);
  if (opts.forwardDp && (!opts.cp || opts.dp)) {
    process.stderr.write('--forward-dp is for a control-plane-only process (--cp without --dp)\n');
    usage(2);
  }
  if ((opts.services.length || opts.known.length) && !opts.dp) {
    process.stderr.write('--service and --known need --dp\n');
    usage(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function log(...parts) {
  process.stderr.write(`[noslated-peer ${process.pid}] ${parts.join(' ')}\n`);
}
function vlog(...parts) {
  if (opts.verbose) log(...parts);
}

// ------------------------------------------------------------------- events

const eventsFile = opts.events ? path.resolve(opts.events) : null;

/** Appends one JSON line synchronously, so it is on disk before we answer. */
function record(ev, fields) {
  if (!eventsFile) return;
  const line = JSON.stringify({ ev, ...fields, t: Date.now() }, (key, value) => {
    // Buffers (bytes fields) are written as base64 strings.
    if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
      return Buffer.from(value.data).toString('base64');
    }
    return value;
  });
  fs.appendFileSync(eventsFile, line + '\n');
}

// ------------------------------------------------------------------- protos

const packageDefinition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
const proto = grpc.loadPackageDefinition(packageDefinition);
const pbRoot = new protobuf.Root();
pbRoot.resolvePath = (_origin, target) => path.join(PROTO_DIR, path.basename(target));
pbRoot.loadSync(PROTO_FILES.map((f) => path.join(PROTO_DIR, f)), { keepCase: true });
const LivenessProbeEventData = pbRoot.lookupType('noslated.LivenessProbeEventData');

// ------------------------------------------------------------------ helpers

const has = (obj, key) => obj != null && Object.prototype.hasOwnProperty.call(obj, key);
const orNull = (v) => (v === undefined ? null : v);
const pairs = (list) => (list || []).map((kv) => [kv.key ?? '', kv.value ?? '']);
const kvList = (pairList) => pairList.map(([key, value]) => ({ key, value: String(value) }));

/** Deterministic body pattern: byte i = (i * 31 + 7) % 251 (period 251). */
const PATTERN = (() => {
  const buf = Buffer.alloc(BODY_CHUNK + 251);
  for (let j = 0; j < buf.length; j++) buf[j] = (j * 31 + 7) % 251;
  return buf;
})();
function patternSlice(offset, length) {
  const start = offset % 251;
  return PATTERN.subarray(start, start + length);
}

/** Raw HTTP/2 request headers per stream (grpc-js strips several of them). */
const rawRequestHeaders = new WeakMap();

function grpcDeadlineOf(call) {
  const d = call.getDeadline();
  if (d instanceof Date) return d.getTime();
  return Number.isFinite(d) ? d : null;
}

function requestHeadersOf(call) {
  // call.call is grpc-js 1.8.8's Http2ServerCallStream; .stream its Http2Stream.
  const stream = call.call && call.call.stream;
  const raw = stream ? rawRequestHeaders.get(stream) : undefined;
  if (!raw) return null;
  const out = {};
  for (const [k, v] of Object.entries(raw)) out[k] = v;
  return out;
}

// ------------------------------------------------------------ invoke calls

/**
 * Per-call context handed to a behaviour. It tracks the request (head fields
 * of the first message, body bytes of every message) and offers guarded
 * writers that become no-ops once the call is cancelled or ended.
 */
class InvokeContext {
  constructor(rpc, call) {
    this.rpc = rpc;
    this.call = call;
    this.head = null; // the first InvokeRequest (body removed)
    this.bodyChunks = [];
    this.bodyLength = 0;
    this.messages = 0;
    this.maxChunk = 0;
    this.laterFields = new Set();
    this.hash = crypto.createHash('sha256');
    this.keepBody = false;
    this.halfClosed = false;
    this.cancelled = false;
    this.ended = false; // we ended the call (status sent)
    this.waiters = [];
    this.startedAt = Date.now();
  }
  get closed() {
    return this.cancelled || this.ended;
  }
  get name() {
    return this.head ? this.head.name : undefined;
  }
  get requestId() {
    return this.head ? this.head.requestId : undefined;
  }
  body() {
    return Buffer.concat(this.bodyChunks, this.bodyLength);
  }
  write(resp) {
    if (this.closed) return false;
    return this.call.write(resp);
  }
  writeHead(status, headerPairs) {
    const result = {};
    if (status !== undefined) result.status = status;
    if (headerPairs && headerPairs.length) result.headers = kvList(headerPairs);
    return this.write({ result });
  }
  writeBody(buf) {
    if (!buf || buf.length === 0) return true;
    return this.write({ result: { body: buf } });
  }
  writeError(error) {
    return this.write({ error });
  }
  /** Ends the call with grpc-status 0 (trailers). */
  finish() {
    if (this.closed) return;
    this.ended = true;
    this.call.end();
  }
  /** Resolves once the client half-closed (or the call is gone). */
  whenHalfClosed() {
    return this.waitFor(() => this.halfClosed || this.closed);
  }
  /** Resolves on 'drain' of the call, or when the call is gone. */
  whenDrained() {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const done = () => {
        this.call.removeListener('drain', done);
        resolve();
      };
      this.call.once('drain', done);
      this.waiters.push({ test: () => this.closed, resolve: done });
    });
  }
  waitFor(test) {
    return new Promise((resolve) => {
      if (test()) return resolve();
      this.waiters.push({ test, resolve });
    });
  }
  wake() {
    const pending = this.waiters;
    this.waiters = [];
    for (const w of pending) {
      if (w.test()) w.resolve();
      else this.waiters.push(w);
    }
  }
  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push({
        test: () => this.closed,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
  /** The request as the `inspect` behaviour reports it. */
  describe() {
    const h = this.head || {};
    return {
      rpc: this.rpc,
      name: orNull(h.name),
      url: orNull(h.url),
      method: orNull(h.method),
      headers: pairs(h.headers),
      baggage: pairs(h.baggage),
      requestId: orNull(h.requestId),
      deadline: orNull(h.deadline),
      debuggerTag: orNull(h.debuggerTag),
      hasName: has(h, 'name'),
      hasUrl: has(h, 'url'),
      hasMethod: has(h, 'method'),
      hasDeadline: has(h, 'deadline'),
      hasRequestId: has(h, 'requestId'),
      hasDebuggerTag: has(h, 'debuggerTag'),
      bodyLength: this.bodyLength,
      bodySha256: this.hash.copy().digest('hex'),
      messages: this.messages,
      maxChunk: this.maxChunk,
      laterFields: [...this.laterFields].sort(),
      grpcDeadline: grpcDeadlineOf(this.call),
      requestHeaders: requestHeadersOf(this.call),
    };
  }
}

/** Writes `n` pattern bytes in 64 KiB result messages. */
async function writePattern(ctx, n, respectBackpressure) {
  let offset = 0;
  while (offset < n && !ctx.closed) {
    const len = Math.min(BODY_CHUNK, n - offset);
    const ok = ctx.writeBody(patternSlice(offset, len));
    offset += len;
    if (!ok && respectBackpressure) await ctx.whenDrained();
  }
}

async function writeChunked(ctx, buf) {
  for (let off = 0; off < buf.length && !ctx.closed; off += BODY_CHUNK) {
    if (!ctx.writeBody(buf.subarray(off, off + BODY_CHUNK))) await ctx.whenDrained();
  }
}

/** error{...} and then the call is left OPEN, like the real push server (§7.3). */
function errorLeaveOpen(error) {
  return {
    onHead(ctx) {
      ctx.writeError(typeof error === 'function' ? error(ctx) : error);
    },
  };
}

/** Answers like echo-buffered once the body has ended. */
async function respondBuffered(ctx, extraHeaders) {
  const body = ctx.body();
  ctx.writeHead(200, [['x-body-length', String(body.length)], ...(extraHeaders || [])]);
  await writeChunked(ctx, body);
  ctx.finish();
}

/**
 * Behaviours, keyed by function (or service) name. Hooks:
 *   onHead(ctx)          first message decoded (its body already counted)
 *   onChunk(ctx, buf)    a non-empty body chunk (also the first message's)
 *   onEnd(ctx)           client half-closed
 *   keepBody             collect the body for ctx.body()
 */
const BEHAVIOURS = {
  echo: {
    onHead(ctx) {
      ctx.writeHead(200, [
        ['content-type', 'application/octet-stream'],
        ['x-request-id', ctx.requestId ?? ''],
      ]);
    },
    onChunk(ctx, buf) {
      ctx.writeBody(buf);
    },
    onEnd(ctx) {
      ctx.finish();
    },
  },
  'echo-buffered': {
    keepBody: true,
    onEnd(ctx) {
      return respondBuffered(ctx);
    },
  },
  inspect: {
    onEnd(ctx) {
      ctx.writeHead(200, [['content-type', 'application/json']]);
      ctx.writeBody(Buffer.from(JSON.stringify(ctx.describe())));
      ctx.finish();
    },
  },
  'error-before-head': errorLeaveOpen({
    name: 'NoslatedError',
    message: 'Noslated request failed: CanonicalCode::INTERNAL_ERROR request kind(Trigger), boom',
    operation: 'Trigger',
    code: 1,
    stack: 'Error: boom\n    at peer',
  }),
  'head-timeout': errorLeaveOpen({
    name: 'NoslatedError',
    message: 'Noslated request failed: CanonicalCode::TIMEOUT request kind(Trigger), Request Timeout',
    operation: 'Trigger',
    code: 2,
    stack: 'NoslatedError: Request Timeout\n    at peer',
  }),
  'rate-limit': errorLeaveOpen({ name: 'Error', message: 'rate limit exceeded', code: 8 }),
  'circuit-breaker': errorLeaveOpen({
    name: 'Error',
    message: 'System circuit breaker opened.',
    code: 9,
  }),
  'no-worker': errorLeaveOpen((ctx) => ({
    name: 'Error',
    message: `No available worker process for ${ctx.name} now.`,
  })),
  'queue-timeout': errorLeaveOpen((ctx) => {
    const deadline = ctx.head.deadline ?? ctx.startedAt + DEFAULT_DEADLINE_MS;
    const requestId = ctx.requestId ?? 'unknown';
    return {
      name: 'Error',
      message: `Waiting for worker has timed out at ${deadline}, request(${requestId}).`,
      code: 4,
    };
  }),
  'not-found': errorLeaveOpen((ctx) => ({
    name: 'Error',
    message: `No function named ${ctx.name} registered in this node.`,
    code: 5,
  })),
  'error-after-head': {
    // Like push_server.ts when the worker's body stream fails (§7.4): the
    // error goes in-stream and the call still ends with grpc-status 0, without
    // waiting for the request body to end.
    onHead(ctx) {
      ctx.writeHead(200, [['content-type', 'text/plain']]);
      ctx.writeBody(Buffer.from('part1'));
      ctx.writeBody(Buffer.from('part2'));
      ctx.writeError({ name: 'Error', message: 'peer reset stream' });
      ctx.finish();
    },
  },
  'grpc-error': {
    onHead(ctx) {
      if (ctx.closed) return;
      ctx.ended = true;
      // grpc-js turns an 'error' event into trailers(-only) with that status.
      ctx.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'plane unavailable' });
    },
  },
  never: {},
  crash: {
    onHead() {
      log('crash: exiting with status 1');
      process.exit(1);
    },
  },
  stall: {
    // A stuck worker: stops reading the request at once (the call's readable
    // is paused, so once grpc-js' small buffer is full the HTTP/2 stream is
    // paused too and no more WINDOW_UPDATE is sent for it) and never answers.
    // Cancellation and deadline expiry are recorded, as for `never`.
    onHead(ctx) {
      ctx.call.pause();
      record('stall', { requestId: orNull(ctx.requestId) });
    },
  },
  early: {
    // Answers and ends the call at once, before the client half-closed.
    onHead(ctx) {
      ctx.writeHead(200, [['content-type', 'text/plain']]);
      ctx.writeBody(Buffer.from('early'));
      ctx.finish();
    },
  },
};
// Issue #20's hardening behaviours live in their own file.
Object.assign(BEHAVIOURS, require('./hardening-behaviours.js'));

function behaviourFor(name) {
  if (typeof name === 'string') {
    if (Object.prototype.hasOwnProperty.call(BEHAVIOURS, name)) return BEHAVIOURS[name];
    let m;
    if ((m = /^status-(\d{1,3})$/.exec(name))) {
      const code = Number(m[1]);
      return {
        onEnd(ctx) {
          ctx.writeHead(code, [
            ['x-custom', '1'],
            ['set-cookie', 'a=1'],
            ['set-cookie', 'b=2'],
          ]);
          ctx.writeBody(Buffer.from(`status ${code}`));
          ctx.finish();
        },
      };
    }
    if ((m = /^big-(fast-)?(\d+)$/.exec(name))) {
      const fast = !!m[1];
      const n = Number(m[2]);
      return {
        async onHead(ctx) {
          ctx.writeHead(200, [
            ['content-type', 'application/octet-stream'],
            ['x-body-length', String(n)],
          ]);
          await writePattern(ctx, n, !fast);
          await ctx.whenHalfClosed();
          ctx.finish();
        },
      };
    }
    if ((m = /^slow-(\d+)$/.exec(name))) {
      const ms = Number(m[1]);
      return {
        keepBody: true,
        async onEnd(ctx) {
          const wait = ctx.startedAt + ms - Date.now();
          if (wait > 0) await ctx.sleep(wait);
          if (!ctx.closed) await respondBuffered(ctx);
        },
      };
    }
  }
  return BEHAVIOURS['not-found'];
}

/** Does the data plane know this function (has a profile reached it)? */
function dpKnows(name) {
  return state.dpProfiles.some((profile) => profile.name === name);
}

/** The function a service profile selects (§6.6), or undefined. */
function serviceFunction(serviceName) {
  const profiles = state.serviceProfiles.filter((p) => p.name === serviceName);
  const item = profiles[profiles.length - 1]; // a later profile wins, as in a Map
  if (!item) return undefined;
  const fnOf = (kvs) => ((kvs || []).find((kv) => kv.key === 'functionName') || {}).value;
  if (item.type === 'proportional-load-balance') {
    const selectors = item.selectors || [];
    if (!selectors.length) return undefined;
    const r = Math.random();
    let sum = 0;
    for (const s of selectors) {
      sum += s.proportion || 0;
      if (r < sum) return fnOf(s.selector);
    }
    return fnOf(selectors[selectors.length - 1].selector);
  }
  return fnOf(item.selector);
}

/**
 * The behaviour of a call, resolved as the real data plane does: a service
 * through the service profiles (`Service not found.`, code 5, when none), then
 * the function through the profiles the data plane holds (`No function named
 * <name> registered in this node.`, code 5, when it does not know it yet).
 */
function resolveBehaviour(rpc, name) {
  let fn = name;
  if (rpc === 'invokeService') {
    fn = serviceFunction(name);
    if (fn === undefined) return errorLeaveOpen({ name: 'Error', message: 'Service not found.', code: 5 });
  }
  if (!dpKnows(fn)) {
    return errorLeaveOpen({ name: 'Error', message: `No function named ${fn} registered in this node.`, code: 5 });
  }
  return behaviourFor(fn);
}

function runHook(ctx, hook, ...args) {
  if (!hook || ctx.closed) return;
  Promise.resolve()
    .then(() => hook(ctx, ...args))
    .catch((err) => {
      log(`behaviour failed: ${err && err.stack}`);
      if (!ctx.closed) {
        ctx.ended = true;
        ctx.call.emit('error', { code: grpc.status.INTERNAL, details: String(err) });
      }
    });
}

function makeInvokeHandler(rpc) {
  return (call) => {
    const ctx = new InvokeContext(rpc, call);
    let behaviour = null;

    call.on('data', (msg) => {
      ctx.messages++;
      const body = has(msg, 'body') ? msg.body : null;
      if (ctx.head === null) {
        const head = { ...msg };
        delete head.body;
        ctx.head = head;
        behaviour = resolveBehaviour(rpc, head.name);
        ctx.keepBody = !!behaviour.keepBody;
        record('invoke', {
          rpc,
          name: orNull(head.name),
          url: orNull(head.url),
          method: orNull(head.method),
          headers: pairs(head.headers),
          baggage: pairs(head.baggage),
          requestId: orNull(head.requestId),
          deadline: orNull(head.deadline),
          hasDeadline: has(head, 'deadline'),
          hasMethod: has(head, 'method'),
          hasUrl: has(head, 'url'),
          hasRequestId: has(head, 'requestId'),
          debuggerTag: orNull(head.debuggerTag),
          firstBodyBytes: body ? body.length : 0,
          grpcDeadline: grpcDeadlineOf(call),
          requestHeaders: requestHeadersOf(call),
        });
        vlog(`${rpc} ${head.name} requestId=${head.requestId}`);
      } else {
        for (const key of Object.keys(msg)) if (key !== 'body') ctx.laterFields.add(key);
      }
      if (body && body.length) {
        ctx.bodyLength += body.length;
        ctx.maxChunk = Math.max(ctx.maxChunk, body.length);
        ctx.hash.update(body);
        if (ctx.keepBody) ctx.bodyChunks.push(body);
      }
      if (ctx.messages === 1) runHook(ctx, behaviour.onHead);
      if (body && body.length) runHook(ctx, behaviour.onChunk, body);
    });

    call.on('end', () => {
      ctx.halfClosed = true;
      record('invoke-end', {
        rpc,
        name: orNull(ctx.name),
        requestId: orNull(ctx.requestId),
        bytes: ctx.bodyLength,
        messages: ctx.messages,
        laterFields: [...ctx.laterFields].sort(),
      });
      ctx.wake();
      if (behaviour) runHook(ctx, behaviour.onEnd);
      // A half-close before any message: the real handler waits for a head
      // forever (§7.1); so do we.
    });

    call.on('cancelled', (reason) => {
      ctx.cancelled = true;
      record('cancelled', {
        rpc,
        name: orNull(ctx.name),
        requestId: orNull(ctx.requestId),
        reason: orNull(reason),
        bytes: ctx.bodyLength,
      });
      vlog(`${rpc} ${ctx.name} cancelled (${reason})`);
      ctx.wake();
    });

    call.on('error', (err) => vlog(`${rpc} call error: ${err && (err.details || err.message)}`));
  };
}

// ---------------------------------------------------------- other services

const state = {
  dpHealthy: !opts.unhealthy,
  unhealthyChecksLeft: opts.unhealthyChecks,
  cpProfiles: [],
  // --known NAME: profiles a control plane forwarded before this process's
  // story starts (for a test that runs a data plane with no control plane).
  dpProfiles: opts.known.map((name) => ({ name })),
  // --service NAME=FUNCTION: service profiles set by an operator before start.
  serviceProfiles: opts.services.map((s) => ({
    name: s.name,
    type: 'default',
    selector: [{ key: 'functionName', value: s.functionName }],
  })),
  platformEnvs: [],
};

/** Metadata key the control plane marks its forwarded calls with. */
const FORWARD_MARK = 'x-fixture-forwarded-by';

/** The data plane takes a profile list (from the control plane, §10.1). */
function dpApplyProfiles(profiles, forwarded) {
  state.dpProfiles = profiles;
  record('profiles-applied', {
    plane: 'dp',
    forwarded,
    names: profiles.map((p) => orNull(p.name)),
  });
}

/**
 * The control plane's side of §8.1: it forwards its whole list to the data
 * plane, and again whenever the data plane (re)connects. Like Noslated, with
 * --profile-delay 0 it answers `set: true` once the connected data plane has
 * the list (herald/impl.ts awaits the forward to every available data plane;
 * with none connected, it answers at once and forwards on connect). With
 * --profile-delay MS it answers at once and forwards MS later: the window in
 * which an invoke after `set: true` still gets code 5 (a data-plane client
 * not ready yet, e.g. after a restart). In one process the data plane is
 * updated directly; with --forward-dp over gRPC. push() resolves once its
 * forward is done (or skipped: no data plane connected).
 */
const forwarder = (() => {
  let queue = Promise.resolve();
  const delay = () => new Promise((resolve) => setTimeout(resolve, opts.profileDelay));
  if (opts.dp && opts.cp) {
    return {
      push() {
        const profiles = state.cpProfiles;
        queue = queue.then(delay).then(() => dpApplyProfiles(profiles, true));
        return queue;
      },
    };
  }
  if (!opts.forwardDp) return { push: () => Promise.resolve() };
  // grpc-js reconnects with backoff; keep it short so a restarted data plane
  // gets the list within a fraction of a second, as Noslated's client does.
  const client = new proto.noslated.data.DataPlane(`unix:${path.resolve(opts.forwardDp)}`, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 50,
    'grpc.max_reconnect_backoff_ms': 200,
  });
  const send = (profiles) =>
    new Promise((resolve) => {
      const md = new grpc.Metadata();
      md.set(FORWARD_MARK, 'control-plane');
      client.setFunctionProfile({ profiles, mode: 'IMMEDIATELY' }, md, { deadline: Date.now() + 5000 }, (err) => {
        if (err) vlog(`forward to data plane failed: ${err.details || err.message}`);
        resolve(!err);
      });
    });
  const channel = client.getChannel();
  const ready = () => channel.getConnectivityState(false) === grpc.connectivityState.READY;
  const push = () => {
    queue = queue.then(delay).then(() => (opts.profileDelay > 0 || ready() ? send(state.cpProfiles) : false));
    return queue;
  };
  // Noslated's control plane re-sends its list to every data plane that
  // becomes ready (data_plane_client/manager.ts _onClientReady).
  let last = null;
  const poll = setInterval(() => {
    const now = channel.getConnectivityState(true);
    if (now === grpc.connectivityState.READY && last !== grpc.connectivityState.READY) push();
    last = now;
  }, 50);
  poll.unref();
  // Noslated's control plane starts (and listens) only once its first
  // data-plane client is ready (base_plane_client_manager.ts _init, bounded
  // by planeFirstConnectionTimeout).
  const firstReady = (timeoutMs) =>
    new Promise((resolve, reject) => {
      const until = Date.now() + timeoutMs;
      const check = () => {
        if (channel.getConnectivityState(true) === grpc.connectivityState.READY) return resolve();
        if (Date.now() > until) return reject(new Error('Timeout on waiting first plane client ready'));
        setTimeout(check, 20);
      };
      check();
    });
  return { push, firstReady, close: () => client.close() };
})();

function hostConnectHandler(plane) {
  const livenessChunk = () => {
    const now = Date.now() >>> 0; // uint32: truncated like Noslated (§6.6)
    const data = LivenessProbeEventData.encode(
      LivenessProbeEventData.create({
        timestamp: now,
        component_liveness: { key: 'host', value: 'ok' },
      }),
    ).finish();
    return {
      timestamp: now,
      events: [
        {
          name: 'host.liveness',
          data: { typeUrl: 'noslated.LivenessProbeEventData', data: Buffer.from(data) },
        },
      ],
    };
  };
  return (call) => {
    record('connect', { plane });
    call.write(livenessChunk());
    call.on('data', (req) => {
      if (req.type === 'LIVENESS_PROBE' || req.type === 2) {
        call.write(livenessChunk());
      } else if (req.type === 'SUBSCRIBE' || req.type === 1) {
        const sub = req.subscription || {};
        record('subscribe', {
          plane,
          eventName: orNull(sub.eventName),
          subscribe: sub.subscribe === true,
        });
      }
    });
    call.on('end', () => call.end());
    call.on('cancelled', () => record('connect-closed', { plane }));
    call.on('error', () => {});
  };
}

function checkHealthHandler(plane) {
  return (call, callback) => {
    record('checkHealth', { plane });
    // --unhealthy-checks N: the first N checks this process answers say
    // unhealthy (a plane busy at start, or a check that came too early).
    if (state.unhealthyChecksLeft > 0) {
      state.unhealthyChecksLeft -= 1;
      callback(null, { name: plane === 'dp' ? 'DataPlane' : 'ControlPlane', health: false, reason: 'not yet' });
      return;
    }
    if (plane === 'dp') {
      callback(
        null,
        state.dpHealthy
          ? { name: 'DataPlane', health: true }
          : { name: 'DataPlane', health: false, reason: 'Circuit Breaker Enabled' },
      );
    } else {
      callback(null, { name: 'ControlPlane', health: true });
    }
  };
}

function setFunctionProfileHandler(plane) {
  return (call, callback) => {
    const req = call.request;
    const profiles = req.profiles || [];
    // The control plane's own forwards are not a client's call (§5).
    const forwarded = plane === 'dp' && call.metadata.get(FORWARD_MARK).length > 0;
    if (!forwarded) {
      record('setFunctionProfile', {
        plane,
        profiles,
        mode: orNull(req.mode),
        hasMode: has(req, 'mode'),
      });
    }
    if (plane === 'cp') {
      state.cpProfiles = profiles;
      const forwarded = forwarder.push();
      if (opts.profileDelay > 0) callback(null, { set: true });
      else forwarded.then(() => callback(null, { set: true }));
    } else {
      dpApplyProfiles(profiles, forwarded);
      callback(null, { set: true });
    }
  };
}

const dataPlaneImpl = {
  checkHealth: checkHealthHandler('dp'),
  setServiceProfiles(call, callback) {
    state.serviceProfiles = call.request.profiles || [];
    record('setServiceProfiles', { plane: 'dp', profiles: state.serviceProfiles });
    callback(null, {});
  },
  getServiceProfiles(call, callback) {
    callback(null, { profiles: state.serviceProfiles });
  },
  useInspector(call, callback) {
    record('useInspector', {
      plane: 'dp',
      funcName: orNull(call.request.funcName),
      use: orNull(call.request.use),
    });
    callback(null, {});
  },
  setFunctionProfile: setFunctionProfileHandler('dp'),
};

const controlPlaneImpl = {
  setFunctionProfile: setFunctionProfileHandler('cp'),
  getFunctionProfile(call, callback) {
    record('getFunctionProfile', { plane: 'cp' });
    callback(null, { profiles: state.cpProfiles });
  },
  setPlatformEnvironmentVariables(call, callback) {
    const envs = call.request.envs || [];
    state.platformEnvs = envs;
    record('setPlatformEnvironmentVariables', { plane: 'cp', envs });
    callback(null, { set: true });
  },
  checkHealth: checkHealthHandler('cp'),
  getWorkerStatsSnapshot(call, callback) {
    callback(null, {
      brokers: state.cpProfiles.map((profile) => ({ name: profile.name, profile, workers: [] })),
    });
  },
};

// ------------------------------------------------------------------ servers

function serverOptions() {
  const o = {
    'grpc.max_receive_message_length': opts.maxMessage,
    'grpc.max_send_message_length': opts.maxMessage,
    'grpc-node.max_session_memory': opts.maxSessionMemory,
  };
  if (opts.maxConcurrentStreams !== null) o['grpc.max_concurrent_streams'] = opts.maxConcurrentStreams;
  return o;
}

function buildServer(plane) {
  const server = new grpc.Server(serverOptions());
  server.addService(proto.noslated.Host.service, { connect: hostConnectHandler(plane) });
  if (plane === 'dp') {
    server.addService(proto.noslated.data.DataPlane.service, dataPlaneImpl);
    server.addService(proto.noslated.data.PushServer.service, {
      invoke: makeInvokeHandler('invoke'),
      invokeService: makeInvokeHandler('invokeService'),
    });
  } else {
    server.addService(proto.noslated.control.ControlPlane.service, controlPlaneImpl);
  }
  return server;
}

function removeStaleSocket(sockPath) {
  try {
    fs.unlinkSync(sockPath);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
}

/** Binds a fresh server for `plane` on `sockPath`; resolves with it. */
function bindPlane(plane, sockPath) {
  removeStaleSocket(sockPath);
  const server = buildServer(plane);
  return new Promise((resolve, reject) => {
    server.bindAsync(`unix:${sockPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) return reject(err);
      // Remember each stream's raw request headers (grpc-js drops grpc-timeout,
      // te, content-type...). http2ServerList is grpc-js 1.8.8's internal list.
      for (const entry of server.http2ServerList || []) {
        entry.server.prependListener('stream', (stream, headers) => {
          rawRequestHeaders.set(stream, headers);
        });
      }
      server.start();
      log(`${plane} listening on unix:${sockPath}`);
      resolve(server);
    });
  });
}

const planes = []; // { plane, sockPath, server }
if (opts.dp) planes.push({ plane: 'dp', sockPath: path.resolve(opts.dp), server: null });
if (opts.cp) planes.push({ plane: 'cp', sockPath: path.resolve(opts.cp), server: null });

async function bindAll() {
  if (forwarder.firstReady) await forwarder.firstReady(30000);
  for (const p of planes) p.server = await bindPlane(p.plane, p.sockPath);
}

let rebinding = Promise.resolve();
function gracefulRebind() {
  rebinding = rebinding.then(async () => {
    log('SIGUSR2: tryShutdown (GOAWAY) and re-bind');
    for (const p of planes) {
      const old = p.server;
      // tryShutdown closes the listener now (libuv unlinks the socket file)
      // and session.close() sends GOAWAY; in-flight calls may still finish.
      old.tryShutdown((err) => log(`${p.plane}: old server shut down${err ? ` (${err})` : ''}`));
      p.server = await bindPlane(p.plane, p.sockPath);
    }
    record('rebound', {});
    process.stdout.write('REBOUND\n');
  });
  rebinding.catch((err) => {
    log(`re-bind failed: ${err && err.stack}`);
    process.exit(1);
  });
}

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: shutting down`);
  for (const p of planes) {
    if (p.server) p.server.forceShutdown();
    removeStaleSocketQuiet(p.sockPath);
  }
  process.exit(0);
}
function removeStaleSocketQuiet(sockPath) {
  try {
    removeStaleSocket(sockPath);
  } catch (_) {
    /* ignore */
  }
}

// NOSLATED_PEER_IGNORE_TERM=1: a plane that does not stop on SIGTERM, for
// the supervisor's grace period (only SIGKILL ends it).
if (process.env.NOSLATED_PEER_IGNORE_TERM === '1') process.on('SIGTERM', () => log('SIGTERM ignored'));
else process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGUSR2', gracefulRebind);

bindAll().then(
  () => {
    process.stdout.write('READY\n');
  },
  (err) => {
    log(`bind failed: ${err && err.stack}`);
    process.exit(1);
  },
);
