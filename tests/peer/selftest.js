#!/usr/bin/env node
/*
 * TEST FIXTURE self-check: drives the fake Noslated planes in this directory
 * (noslated-peer.js, and py/noslated_peer.py when --python is given) with an
 * @grpc/grpc-js CLIENT and checks every behaviour the fixtures promise.
 * Not part of noslate-fc; it only proves the fixtures do what README.md says.
 *
 *   node selftest.js [--python /path/to/venv/bin/python] [--only node|python]
 *
 * Prints `PASS <peer> <check>` / `FAIL <peer> <check>: <why>` per check, then
 * `selftest: N passed, M failed`, and exits non-zero if anything failed.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawn } = require('child_process');
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
const def = protoLoader.loadSync(PROTO_FILES, {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: false,
  includeDirs: [PROTO_DIR],
});
const proto = grpc.loadPackageDefinition(def);
const pbRoot = new protobuf.Root();
pbRoot.resolvePath = (_o, target) => path.join(PROTO_DIR, path.basename(target));
pbRoot.loadSync(PROTO_FILES.map((f) => path.join(PROTO_DIR, f)), { keepCase: true });
const LivenessProbeEventData = pbRoot.lookupType('noslated.LivenessProbeEventData');

// ---------------------------------------------------------------- arguments
let pythonPath = null;
let only = null;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--python') pythonPath = process.argv[++i];
  else if (a.startsWith('--python=')) pythonPath = a.slice(9);
  else if (a === '--only') only = process.argv[++i];
  else {
    console.error(`unknown argument ${a}`);
    process.exit(2);
  }
}

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
/** JSON with object keys sorted, so key order does not matter. */
function canon(v) {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x) && !Buffer.isBuffer(x) && x.type !== 'Buffer'
      ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]]))
      : x,
  );
}
function assertEq(actual, expected, what) {
  const a = canon(actual);
  const e = canon(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

function pattern(offset, n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = ((offset + i) * 31 + 7) % 251;
  return b;
}

/** The functions the suite registers (the data plane is strict on names). */
const FUNCTIONS = [
  'echo', 'echo-buffered', 'inspect', 'status-201', 'big-1048576', 'big-fast-1048576', 'big-100000',
  'slow-300', 'slow-700', 'error-before-head', 'rate-limit', 'no-worker', 'queue-timeout', 'circuit-breaker',
  'head-timeout', 'error-after-head', 'grpc-error', 'never', 'early', 'crash',
];
const profileOf = (name) => ({ name, runtime: 'aworker', url: `file:///code/${name}`, signature: 'md5:0', sourceFile: 'index.js' });

/**
 * Starts a peer process; resolves once it printed READY. `planes` picks
 * which planes it serves (default both); `extraArgs` are appended.
 */
function startPeer(kind, dir, extraArgs = [], planes = ['dp', 'cp']) {
  const dp = path.join(dir, 'dp.sock');
  const cp = path.join(dir, 'cp.sock');
  const events = path.join(dir, 'events.jsonl');
  const args = [
    ...(planes.includes('dp') ? ['--dp', dp] : []),
    ...(planes.includes('cp') ? ['--cp', cp] : []),
    '--events',
    events,
    ...extraArgs,
  ];
  const child =
    kind === 'node'
      ? spawn(process.execPath, [path.join(__dirname, 'noslated-peer.js'), ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawn(pythonPath, [path.join(__dirname, 'py', 'noslated_peer.py'), ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  const peer = { kind, child, dp, cp, events, dir, stdoutLines: [], stderr: '', exit: null };
  peer.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      peer.exit = { code, signal };
      resolve(peer.exit);
    });
  });
  child.stderr.on('data', (d) => {
    peer.stderr += d.toString();
  });
  let buf = '';
  const lineWaiters = [];
  child.stdout.on('data', (d) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      peer.stdoutLines.push(line);
      for (const w of lineWaiters.splice(0)) w();
    }
  });
  peer.waitLine = (text, timeoutMs) =>
    new Promise((resolve, reject) => {
      const seen = () => peer.stdoutLines.filter((l) => l === text).length;
      const start = seen();
      const timer = setTimeout(() => reject(new Error(`timeout waiting for ${text}`)), timeoutMs);
      const check = () => {
        if (seen() > start) {
          clearTimeout(timer);
          resolve();
        } else lineWaiters.push(check);
      };
      check();
    });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} peer not READY in 30 s: ${peer.stderr}`)), 30000);
    const check = () => {
      if (peer.stdoutLines.includes('READY')) {
        clearTimeout(timer);
        resolve(peer);
      } else lineWaiters.push(check);
    };
    check();
    peer.exited.then((e) => reject(new Error(`${kind} peer exited ${JSON.stringify(e)}: ${peer.stderr}`)));
  });
  return ready;
}

async function stopPeer(peer) {
  if (peer.exit) return peer.exit;
  process.kill(peer.child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (!peer.exit) process.kill(peer.child.pid, 'SIGKILL');
  }, 5000);
  const e = await peer.exited;
  clearTimeout(timer);
  return e;
}

function readEvents(peer) {
  if (!fs.existsSync(peer.events)) return [];
  return fs
    .readFileSync(peer.events, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

async function waitEvent(peer, pred, timeoutMs = 3000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ev = readEvents(peer).find(pred);
    if (ev) return ev;
    if (Date.now() > end) throw new Error('event not recorded');
    await sleep(20);
  }
}

function clients(peer) {
  const creds = grpc.credentials.createInsecure();
  return {
    push: new proto.noslated.data.PushServer(`unix:${peer.dp}`, creds),
    dp: new proto.noslated.data.DataPlane(`unix:${peer.dp}`, creds),
    dpHost: new proto.noslated.Host(`unix:${peer.dp}`, creds),
    cp: new proto.noslated.control.ControlPlane(`unix:${peer.cp}`, creds),
    cpOnDp: new proto.noslated.control.ControlPlane(`unix:${peer.dp}`, creds),
    close() {
      for (const c of [this.push, this.dp, this.dpHost, this.cp, this.cpOnDp]) c.close();
    },
  };
}

function unary(client, method, req, deadlineMs = 5000) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * Runs one invoke call. `head` is the first InvokeRequest; `chunks` later
 * body messages. Options: deadlineMs (gRPC deadline), rpc ('invoke' or
 * 'invokeService'), waitHeadBeforeBody, stopAfterFirst (resolve after the
 * first response message without ending: for calls left open).
 */
function invoke(push, head, chunks = [], o = {}) {
  return new Promise((resolve) => {
    const callOpts = o.deadlineMs ? { deadline: Date.now() + o.deadlineMs } : {};
    const call = push[o.rpc || 'invoke'](callOpts);
    const r = { messages: [], status: null, call, firstAt: null, startedAt: Date.now(), endedAt: null };
    let sentBody = false;
    const sendBody = () => {
      if (sentBody) return;
      sentBody = true;
      for (const c of chunks) call.write({ body: c });
      if (!o.noHalfClose) call.end();
    };
    call.on('data', (m) => {
      r.messages.push(m);
      if (r.firstAt === null) r.firstAt = Date.now();
      if (o.waitHeadBeforeBody && r.messages.length === 1) sendBody();
      if (o.stopAfterFirst && r.messages.length === 1) resolve(r);
    });
    call.on('status', (s) => {
      r.status = s;
      r.endedAt = Date.now();
      resolve(r);
    });
    call.on('error', () => {}); // the status event carries it
    call.write(head);
    if (!o.waitHeadBeforeBody) sendBody();
  });
}

/** Registers `names` through the control plane and waits until the data plane has them. */
async function register(c, peer, names) {
  const applied = () => readEvents(peer).filter((e) => e.ev === 'profiles-applied' && canon(e.names) === canon(names));
  const before = applied().length;
  assertEq(await unary(c.cp, 'setFunctionProfile', { profiles: names.map(profileOf), mode: 'IMMEDIATELY' }), { set: true }, 'set');
  const end = Date.now() + 5000;
  while (applied().length <= before) {
    if (Date.now() > end) throw new Error(`the data plane never got ${names.join(',')}`);
    await sleep(20);
  }
}

function responseParts(r) {
  const [first, ...rest] = r.messages;
  const body = Buffer.concat(rest.filter((m) => m.result && m.result.body).map((m) => m.result.body));
  return { head: first && first.result, error: first && first.error, rest, body };
}
const headerPairs = (h) => (h.headers || []).map((kv) => [kv.key, kv.value]);

let rid = 0;
const nextId = (p) => `${p}-${process.pid}-${++rid}`;

// ------------------------------------------------------------------- checks
function checksFor(kind) {
  const checks = [];
  const check = (name, fn, opts = {}) => checks.push({ name, fn, ...opts });

  check('echo 1 MiB streamed, head before body', async ({ c }) => {
    const id = nextId('echo');
    const data = crypto.randomBytes(1024 * 1024);
    const chunks = [];
    for (let i = 0; i < data.length; i += 65536) chunks.push(data.subarray(i, i + 65536));
    const r = await invoke(
      c.push,
      { name: 'echo', url: '/e', method: 'POST', requestId: id, deadline: Date.now() + 10000 },
      chunks,
      { waitHeadBeforeBody: true },
    );
    assertEq(r.status.code, 0, 'grpc status');
    const { head, body, rest } = responseParts(r);
    assertEq(head.status, 200, 'status');
    assertEq(
      headerPairs(head),
      [
        ['content-type', 'application/octet-stream'],
        ['x-request-id', id],
      ],
      'headers',
    );
    assert(body.equals(data), `echoed body differs (${body.length} bytes)`);
    assert(rest.length >= 2, 'body should come back in several messages');
  });

  check('echo with body in the first message', async ({ c }) => {
    const r = await invoke(c.push, { name: 'echo', method: 'POST', requestId: nextId('e1'), body: Buffer.from('hi') });
    assertEq(r.status.code, 0, 'grpc status');
    assertEq(responseParts(r).body.toString(), 'hi', 'body');
  });

  check('echo-buffered 200 KiB', async ({ c }) => {
    const data = crypto.randomBytes(200 * 1024);
    const r = await invoke(c.push, { name: 'echo-buffered', method: 'POST', requestId: nextId('eb'), body: data.subarray(0, 1000) }, [
      data.subarray(1000, 100000),
      data.subarray(100000),
    ]);
    assertEq(r.status.code, 0, 'grpc status');
    const { head, body, rest } = responseParts(r);
    assertEq(head.status, 200, 'status');
    assertEq(headerPairs(head), [['x-body-length', String(data.length)]], 'headers');
    assert(body.equals(data), 'body differs');
    assertEq(rest.length, 4, 'number of 64 KiB chunks');
  });

  check('inspect: head fields, order, presence, body stats', async ({ c, peer }) => {
    const id = nextId('insp');
    const deadline = Date.now() + 12345.5;
    const r = await invoke(
      c.push,
      {
        name: 'inspect',
        url: 'http://h/p?q=1',
        method: 'PUT',
        headers: [
          { key: 'host', value: 'h' },
          { key: 'x-dup', value: '1' },
          { key: 'x-dup', value: '2' },
        ],
        baggage: [{ key: 'traceparent', value: 'tp' }],
        deadline,
        requestId: id,
        body: Buffer.from('abc'),
      },
      [Buffer.from('defg'), Buffer.from('')],
      { deadlineMs: 20000 },
    );
    assertEq(r.status.code, 0, 'grpc status');
    const { head, body } = responseParts(r);
    assertEq(headerPairs(head), [['content-type', 'application/json']], 'headers');
    const j = JSON.parse(body.toString());
    assertEq(j.name, 'inspect', 'name');
    assertEq(j.url, 'http://h/p?q=1', 'url');
    assertEq(j.method, 'PUT', 'method');
    assertEq(
      j.headers,
      [
        ['host', 'h'],
        ['x-dup', '1'],
        ['x-dup', '2'],
      ],
      'headers',
    );
    assertEq(j.baggage, [['traceparent', 'tp']], 'baggage');
    assertEq(j.requestId, id, 'requestId');
    assertEq(j.deadline, deadline, 'deadline');
    assertEq(j.bodyLength, 7, 'bodyLength');
    assertEq(j.bodySha256, crypto.createHash('sha256').update('abcdefg').digest('hex'), 'sha');
    assertEq(j.messages, 3, 'messages');
    assertEq(j.maxChunk, 4, 'maxChunk');
    assertEq(j.laterFields, [], 'laterFields');
    for (const k of ['hasName', 'hasUrl', 'hasMethod', 'hasDeadline', 'hasRequestId']) assertEq(j[k], true, k);
    assert(
      typeof j.grpcDeadline === 'number' && Math.abs(j.grpcDeadline - (r.startedAt + 20000)) < 2000,
      `grpcDeadline ${j.grpcDeadline}`,
    );
    if (kind === 'node') {
      // grpcio does not expose grpc-timeout in the invocation metadata
      assert(j.requestHeaders && /^\d+[mSMHun]$/.test(j.requestHeaders['grpc-timeout']), 'raw grpc-timeout header');
    }
    const ev = await waitEvent(peer, (e) => e.ev === 'invoke' && e.requestId === id);
    assertEq(ev.name, 'inspect', 'event name');
    assertEq(ev.method, 'PUT', 'event method');
    assertEq(ev.deadline, deadline, 'event deadline');
    assertEq(ev.hasDeadline, true, 'event hasDeadline');
    assertEq(ev.headers[2], ['x-dup', '2'], 'event headers');
    assertEq(ev.baggage, [['traceparent', 'tp']], 'event baggage');
    const end = await waitEvent(peer, (e) => e.ev === 'invoke-end' && e.requestId === id);
    assertEq(end.bytes, 7, 'invoke-end bytes');
  });

  check('inspect: absent vs present-empty head fields', async ({ c, peer }) => {
    let r = await invoke(c.push, { name: 'inspect' });
    let j = JSON.parse(responseParts(r).body.toString());
    assertEq([j.hasUrl, j.hasMethod, j.hasDeadline, j.hasRequestId], [false, false, false, false], 'absent');
    assertEq([j.url, j.method, j.deadline, j.requestId], [null, null, null, null], 'absent values');
    const id = nextId('empty');
    r = await invoke(c.push, { name: 'inspect', url: '', method: '', deadline: 0, requestId: id }, [
      Buffer.from('x'),
    ]);
    j = JSON.parse(responseParts(r).body.toString());
    assertEq([j.hasUrl, j.hasMethod, j.hasDeadline, j.hasRequestId], [true, true, true, true], 'present');
    assertEq([j.url, j.method, j.deadline], ['', '', 0], 'present-zero values');
    const ev = await waitEvent(peer, (e) => e.ev === 'invoke' && e.requestId === id);
    assertEq([ev.hasDeadline, ev.deadline, ev.hasMethod], [true, 0, true], 'event presence');
  });

  check('inspect: head fields in later messages are reported', async ({ c }) => {
    const call = c.push.invoke();
    const msgs = [];
    const done = new Promise((resolve) => {
      call.on('data', (m) => msgs.push(m));
      call.on('status', resolve);
      call.on('error', () => {});
    });
    call.write({ name: 'inspect', method: 'POST' });
    call.write({ body: Buffer.from('1'), url: '/again', name: 'x' });
    call.end();
    await done;
    const j = JSON.parse(msgs[1].result.body.toString());
    assertEq(j.laterFields, ['name', 'url'], 'laterFields');
    assertEq(j.name, 'inspect', 'head from first message only');
  });

  check('status-201 with duplicate set-cookie', async ({ c }) => {
    const r = await invoke(c.push, { name: 'status-201', method: 'POST', requestId: nextId('st') }, [Buffer.from('ignored')]);
    assertEq(r.status.code, 0, 'grpc status');
    const { head, body } = responseParts(r);
    assertEq(head.status, 201, 'status');
    assertEq(
      headerPairs(head),
      [
        ['x-custom', '1'],
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
      ],
      'headers',
    );
    assertEq(body.toString(), 'status 201', 'body');
  });

  for (const name of ['big-1048576', 'big-fast-1048576', 'big-100000']) {
    check(`${name} pattern`, async ({ c }) => {
      const n = Number(name.split('-').pop());
      const r = await invoke(c.push, { name, method: 'GET', requestId: nextId('big') });
      assertEq(r.status.code, 0, 'grpc status');
      const { head, body, rest } = responseParts(r);
      assertEq(head.status, 200, 'status');
      assertEq(body.length, n, 'length');
      assert(body.equals(pattern(0, n)), 'pattern differs');
      assert(rest.every((m) => m.result.body.length <= 65536), 'chunks <= 64 KiB');
    });
  }

  check('slow-300 answers after ~300 ms', async ({ c }) => {
    const r = await invoke(c.push, { name: 'slow-300', method: 'POST', body: Buffer.from('zz') });
    assertEq(r.status.code, 0, 'grpc status');
    assert(r.firstAt - r.startedAt >= 280, `answered after ${r.firstAt - r.startedAt} ms`);
    assertEq(responseParts(r).body.toString(), 'zz', 'body');
  });

  check('error-before-head: error, call left open, then cancel recorded', async ({ c, peer }) => {
    const id = nextId('ebh');
    const r = await invoke(c.push, { name: 'error-before-head', requestId: id }, [], { stopAfterFirst: true });
    const { error } = responseParts(r);
    assert(error, 'first message must be an error');
    assertEq(error.name, 'NoslatedError', 'name');
    assertEq(error.message, 'Noslated request failed: CanonicalCode::INTERNAL_ERROR request kind(Trigger), boom', 'message');
    assertEq(error.operation, 'Trigger', 'operation');
    assertEq(error.code, 1, 'code');
    assertEq(error.stack, 'Error: boom\n    at peer', 'stack');
    await sleep(300);
    assertEq(r.status, null, 'call must stay open');
    r.call.cancel();
    await waitEvent(peer, (e) => e.ev === 'cancelled' && e.requestId === id);
    await waitEvent(peer, (e) => e.ev === 'invoke-end' && e.requestId === id);
  });

  const leaveOpenErrors = [
    ['not-found', (id) => ({ name: 'Error', message: 'No function named not-found registered in this node.', code: 5 })],
    ['no-such-function', () => ({ name: 'Error', message: 'No function named no-such-function registered in this node.', code: 5 })],
    ['rate-limit', () => ({ name: 'Error', message: 'rate limit exceeded', code: 8 })],
    ['no-worker', () => ({ name: 'Error', message: 'No available worker process for no-worker now.' })],
    ['queue-timeout', (id, dl) => ({ name: 'Error', message: `Waiting for worker has timed out at ${dl}, request(${id}).`, code: 4 })],
    ['circuit-breaker', () => ({ name: 'Error', message: 'System circuit breaker opened.', code: 9 })],
  ];
  for (const [name, expected] of leaveOpenErrors) {
    check(`${name}: in-stream error, left open`, async ({ c, peer }) => {
      const id = nextId(name);
      const deadline = 1700000000000;
      const r = await invoke(c.push, { name, requestId: id, deadline }, [], { stopAfterFirst: true });
      const { error } = responseParts(r);
      assert(error, 'first message must be an error');
      assertEq(error, expected(id, deadline), 'error');
      await sleep(100);
      assertEq(r.status, null, 'call must stay open');
      r.call.cancel();
      await waitEvent(peer, (e) => e.ev === 'cancelled' && e.requestId === id);
    });
  }

  check('head-timeout: NoslatedError TIMEOUT', async ({ c }) => {
    const r = await invoke(c.push, { name: 'head-timeout' }, [], { stopAfterFirst: true });
    const { error } = responseParts(r);
    assertEq([error.name, error.code, error.operation], ['NoslatedError', 2, 'Trigger'], 'error');
    r.call.cancel();
  });

  check('error-after-head: head, part1, part2, error, status OK', async ({ c }) => {
    const r = await invoke(c.push, { name: 'error-after-head', method: 'POST', requestId: nextId('eah') });
    assertEq(r.status.code, 0, 'grpc status');
    assertEq(r.messages.length, 4, 'messages');
    assertEq(r.messages[0].result.status, 200, 'head status');
    assertEq(r.messages[1].result.body.toString(), 'part1', 'chunk 1');
    assertEq(r.messages[2].result.body.toString(), 'part2', 'chunk 2');
    assertEq(r.messages[3].error, { name: 'Error', message: 'peer reset stream' }, 'error');
  });

  check('grpc-error: UNAVAILABLE without messages', async ({ c }) => {
    const r = await invoke(c.push, { name: 'grpc-error' });
    assertEq(r.messages.length, 0, 'messages');
    assertEq(r.status.code, grpc.status.UNAVAILABLE, 'grpc status');
    assertEq(r.status.details, 'plane unavailable', 'details');
  });

  check('never + 200 ms deadline: DEADLINE_EXCEEDED, cancellation recorded', async ({ c, peer }) => {
    const id = nextId('never');
    const r = await invoke(c.push, { name: 'never', requestId: id }, [Buffer.from('x')], { deadlineMs: 200 });
    assertEq(r.messages.length, 0, 'messages');
    assertEq(r.status.code, grpc.status.DEADLINE_EXCEEDED, 'grpc status');
    const took = r.endedAt - r.startedAt;
    assert(took >= 150 && took < 2000, `took ${took} ms`);
    await waitEvent(peer, (e) => e.ev === 'cancelled' && e.requestId === id);
  });

  check('never + client cancel recorded', async ({ c, peer }) => {
    const id = nextId('never-c');
    const call = c.push.invoke();
    call.on('error', () => {});
    call.write({ name: 'never', requestId: id });
    await waitEvent(peer, (e) => e.ev === 'invoke' && e.requestId === id);
    call.cancel();
    await waitEvent(peer, (e) => e.ev === 'cancelled' && e.requestId === id);
  });

  check('early: answer and end before the client half-closes', async ({ c }) => {
    const r = await invoke(c.push, { name: 'early', method: 'POST', requestId: nextId('early') }, [], {
      noHalfClose: true,
      deadlineMs: 3000,
    });
    assertEq(r.status.code, 0, 'grpc status');
    assertEq(responseParts(r).body.toString(), 'early', 'body');
  });

  check('invokeService resolved through the service profiles (--service)', async ({ c, peer }) => {
    const id = nextId('svc');
    const r = await invoke(c.push, { name: 'svc-echo', method: 'POST', requestId: id, body: Buffer.from('svc') }, [], {
      rpc: 'invokeService',
    });
    assertEq(r.status.code, 0, 'grpc status');
    assertEq(responseParts(r).body.toString(), 'svc', 'body');
    const ev = await waitEvent(peer, (e) => e.ev === 'invoke' && e.requestId === id);
    assertEq([ev.rpc, ev.name], ['invokeService', 'svc-echo'], 'rpc, name');
    for (const [service, error] of [
      ['svc-ghost', { name: 'Error', message: 'No function named ghost registered in this node.', code: 5 }],
      ['echo', { name: 'Error', message: 'Service not found.', code: 5 }],
    ]) {
      const bad = await invoke(c.push, { name: service }, [], { rpc: 'invokeService', stopAfterFirst: true });
      assertEq(responseParts(bad).error, error, service);
      bad.call.cancel();
    }
  });

  check('--profile-delay 0: set:true comes after the data plane has the list (as Noslated)', async ({ c }) => {
    assertEq(await unary(c.cp, 'setFunctionProfile', { profiles: FUNCTIONS.map(profileOf), mode: 'IMMEDIATELY' }), { set: true }, 'set');
    const r = await invoke(c.push, { name: 'echo', method: 'POST', body: Buffer.from('at once') });
    assertEq([r.status.code, responseParts(r).body.toString()], [0, 'at once'], 'right after set:true');
  });

  check('strict names: a function is unknown until its profile reached the data plane', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsp-strict-'));
    const p = await startPeer(kind, dir, ['--profile-delay', '1000']);
    const cc = clients(p);
    try {
      const notYet = { name: 'Error', message: 'No function named echo registered in this node.', code: 5 };
      let r = await invoke(cc.push, { name: 'echo' }, [], { stopAfterFirst: true });
      assertEq(responseParts(r).error, notYet, 'before any profile');
      r.call.cancel();
      const t0 = Date.now();
      assertEq(await unary(cc.cp, 'setFunctionProfile', { profiles: [profileOf('echo')], mode: 'IMMEDIATELY' }), { set: true }, 'set');
      // The control plane has the list at once; the data plane 1000 ms later.
      assertEq((await unary(cc.cp, 'getFunctionProfile', {})).profiles.map((x) => x.name), ['echo'], 'cp list');
      r = await invoke(cc.push, { name: 'echo' }, [], { stopAfterFirst: true });
      assert(Date.now() - t0 < 1000, 'the window closed before the check ran (machine too slow)');
      assertEq(responseParts(r).error, notYet, 'in the window after set: true');
      r.call.cancel();
      const applied = await waitEvent(p, (e) => e.ev === 'profiles-applied' && e.names.includes('echo'), 5000);
      assertEq(applied.forwarded, true, 'forwarded by the control plane');
      r = await invoke(cc.push, { name: 'echo', method: 'POST', body: Buffer.from('now') });
      assertEq([r.status.code, responseParts(r).body.toString()], [0, 'now'], 'after the window');
      // Replacing the set removes functions (docs/noslated-protocol.md §10.1).
      await register(cc, p, ['inspect']);
      r = await invoke(cc.push, { name: 'echo' }, [], { stopAfterFirst: true });
      assertEq(responseParts(r).error, notYet, 'removed by the next set');
      r.call.cancel();
    } finally {
      cc.close();
      await stopPeer(p);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, { isolated: true });

  check(
    '--known: a data plane alone serves exactly the functions it was started with',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsp-known-'));
      const p = await startPeer(kind, dir, ['--known', 'echo'], ['dp']);
      const cc = clients(p);
      try {
        let r = await invoke(cc.push, { name: 'echo', method: 'POST', body: Buffer.from('k') });
        assertEq([r.status.code, responseParts(r).body.toString()], [0, 'k'], 'known');
        r = await invoke(cc.push, { name: 'inspect' }, [], { stopAfterFirst: true });
        assertEq(responseParts(r).error.code, 5, 'not known');
        r.call.cancel();
      } finally {
        cc.close();
        await stopPeer(p);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { isolated: true, skipFor: ['python'] },
  );

  check(
    'split planes: the control plane forwards over gRPC, again after a data-plane restart; each plane dies alone',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsp-split-'));
      const dpSock = path.join(dir, 'dp.sock');
      let dp = await startPeer(kind, dir, [], ['dp']);
      const cp = await startPeer(kind, dir, ['--forward-dp', dpSock], ['cp']);
      let cc = clients(dp);
      try {
        // The data plane is connected: set:true comes after it has the list.
        const end0 = Date.now() + 5000;
        while (!readEvents(dp).some((e) => e.ev === 'profiles-applied' && e.forwarded)) {
          if (Date.now() > end0) throw new Error('the control plane never reached the data plane');
          await sleep(20);
        }
        assertEq(await unary(cc.cp, 'setFunctionProfile', { profiles: [profileOf('echo')], mode: 'IMMEDIATELY' }), { set: true }, 'set');
        const ev = readEvents(dp).filter((e) => e.ev === 'setFunctionProfile');
        assertEq(ev.map((e) => e.plane), ['cp'], 'only the client call is a setFunctionProfile event');
        let r = await invoke(cc.push, { name: 'echo', method: 'POST', body: Buffer.from('one') });
        assertEq([r.status.code, responseParts(r).body.toString()], [0, 'one'], 'served');
        // Data plane down, control plane up: the control plane still answers.
        process.kill(dp.child.pid, 'SIGKILL');
        await dp.exited;
        assertEq(await unary(cc.cp, 'checkHealth', {}), { name: 'ControlPlane', health: true }, 'cp alone');
        // A new data plane knows nothing until the control plane re-sends.
        const appliedBefore = readEvents(dp).filter((e) => e.ev === 'profiles-applied').length;
        cc.close();
        dp = await startPeer(kind, dir, [], ['dp']);
        cc = clients(dp);
        const end = Date.now() + 5000;
        while (!readEvents(dp).slice().filter((e) => e.ev === 'profiles-applied').slice(appliedBefore).some((e) => e.names.includes('echo'))) {
          if (Date.now() > end) throw new Error('the control plane did not re-send to the new data plane');
          await sleep(20);
        }
        r = await invoke(cc.push, { name: 'echo', method: 'POST', body: Buffer.from('two') });
        assertEq([r.status.code, responseParts(r).body.toString()], [0, 'two'], 'served by the new data plane');
        // Control plane down, data plane up: invokes still served.
        process.kill(cp.child.pid, 'SIGKILL');
        await cp.exited;
        r = await invoke(cc.push, { name: 'echo', method: 'POST', body: Buffer.from('three') });
        assertEq([r.status.code, responseParts(r).body.toString()], [0, 'three'], 'served without a control plane');
      } finally {
        cc.close();
        await stopPeer(dp);
        await stopPeer(cp);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { isolated: true, skipFor: ['python'] },
  );

  check('checkHealth dp and cp', async ({ c, peer }) => {
    assertEq(await unary(c.dp, 'checkHealth', {}), { name: 'DataPlane', health: true }, 'dp');
    assertEq(await unary(c.cp, 'checkHealth', {}), { name: 'ControlPlane', health: true }, 'cp');
    await waitEvent(peer, (e) => e.ev === 'checkHealth' && e.plane === 'dp');
    await waitEvent(peer, (e) => e.ev === 'checkHealth' && e.plane === 'cp');
  });

  check('unknown method on dp socket: UNIMPLEMENTED', async ({ c }) => {
    try {
      await unary(c.cpOnDp, 'getFunctionProfile', {});
      throw new Error('expected an error');
    } catch (err) {
      assertEq(err.code, grpc.status.UNIMPLEMENTED, 'code');
    }
  });

  check('setFunctionProfile: presence kept, event, getFunctionProfile', async ({ c, peer }) => {
    const profiles = [
      {
        name: 'hello',
        runtime: 'aworker',
        url: 'file:///code/hello',
        signature: 'md5:1',
        sourceFile: 'index.js',
        worker: { shrinkCooldownOnStartup: false, reservationCount: 0, maxActivateRequests: 4, execArgv: ['--a'] },
        resourceLimit: { memory: 134217728, cpu: 0.5 },
        environments: [{ key: 'A', value: '1' }],
        rateLimit: { maxTokenCount: 10 },
        namespace: 'ns',
      },
      { name: 'node-fn', runtime: 'nodejs', url: 'file:///code/n', signature: 'md5:2', handler: 'index.handler' },
    ];
    const res = await unary(c.cp, 'setFunctionProfile', { profiles, mode: 'IMMEDIATELY' });
    assertEq(res, { set: true }, 'reply');
    const ev = await waitEvent(peer, (e) => e.ev === 'setFunctionProfile' && e.plane === 'cp' && e.profiles[0].name === 'hello');
    assertEq(ev.mode, 'IMMEDIATELY', 'mode');
    assertEq(ev.profiles, profiles, 'profiles in event');
    const got = await unary(c.cp, 'getFunctionProfile', {});
    assertEq(got.profiles, profiles, 'getFunctionProfile');
    await register(c, peer, FUNCTIONS); // the set replaced the suite's functions
  });

  check('setPlatformEnvironmentVariables', async ({ c, peer }) => {
    const envs = [
      { key: 'TZ', value: 'UTC' },
      { key: 'EMPTY', value: '' },
    ];
    assertEq(await unary(c.cp, 'setPlatformEnvironmentVariables', { envs }), { set: true }, 'reply');
    const ev = await waitEvent(peer, (e) => e.ev === 'setPlatformEnvironmentVariables');
    assertEq(ev.envs, envs, 'envs');
  });

  check('setServiceProfiles / getServiceProfiles', async ({ c, peer }) => {
    const profiles = [{ name: 'svc', type: 'default', selector: [{ key: 'functionName', value: 'echo' }] }];
    assertEq(await unary(c.dp, 'setServiceProfiles', { profiles }), {}, 'reply');
    await waitEvent(peer, (e) => e.ev === 'setServiceProfiles');
    assertEq((await unary(c.dp, 'getServiceProfiles', {})).profiles, profiles, 'read back');
  });

  check('Host.connect: host.liveness at start and per probe', async ({ c, peer }) => {
    const call = c.dpHost.connect();
    const chunks = [];
    const waiters = [];
    call.on('data', (m) => {
      chunks.push(m);
      waiters.splice(0).forEach((w) => w());
    });
    call.on('error', () => {});
    const waitChunks = (n) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${chunks.length} chunks`)), 3000);
        const f = () => (chunks.length >= n ? (clearTimeout(t), resolve()) : waiters.push(f));
        f();
      });
    await waitChunks(1);
    const ev0 = chunks[0].events[0];
    assertEq(ev0.name, 'host.liveness', 'event name');
    assertEq(ev0.data.typeUrl, 'noslated.LivenessProbeEventData', 'typeUrl');
    const data = LivenessProbeEventData.toObject(LivenessProbeEventData.decode(ev0.data.data));
    assertEq(data.component_liveness, { key: 'host', value: 'ok' }, 'liveness data');
    assert(typeof chunks[0].timestamp === 'number', 'timestamp');
    call.write({ type: 'LIVENESS_PROBE', liveness: { timestamp: 1 } });
    await waitChunks(2);
    assertEq(chunks[1].events[0].name, 'host.liveness', 'second chunk');
    call.write({ type: 'SUBSCRIBE', subscription: { eventName: 'requestQueueing', subscribe: true } });
    await waitEvent(peer, (e) => e.ev === 'subscribe' && e.eventName === 'requestQueueing');
    await waitEvent(peer, (e) => e.ev === 'connect' && e.plane === 'dp');
    await new Promise((resolve) => {
      call.on('status', resolve);
      call.end();
    });
  });

  check(
    'SIGUSR2: GOAWAY + re-bind, in-flight call finishes, new connections work',
    async ({ c, peer }) => {
      const slow = invoke(c.push, { name: 'slow-700', method: 'POST', body: Buffer.from('inflight') });
      await sleep(150);
      process.kill(peer.child.pid, 'SIGUSR2');
      await peer.waitLine('REBOUND', 5000);
      const fresh = clients(peer);
      try {
        const r2 = await invoke(fresh.push, { name: 'echo', method: 'POST', body: Buffer.from('after') });
        assertEq(r2.status.code, 0, 'new connection grpc status');
        assertEq(responseParts(r2).body.toString(), 'after', 'new connection body');
      } finally {
        fresh.close();
      }
      const r1 = await slow;
      assertEq(r1.status.code, 0, 'in-flight grpc status');
      assertEq(responseParts(r1).body.toString(), 'inflight', 'in-flight body');
      // the old channel reconnects to the new server
      const r3 = await invoke(c.push, { name: 'echo', method: 'POST', body: Buffer.from('again') }, [], { deadlineMs: 5000 });
      assertEq(r3.status.code, 0, 'old channel after GOAWAY');
      await waitEvent(peer, (e) => e.ev === 'rebound');
    },
    { skipFor: ['python'] },
  );

  check(
    'crash: peer exits 1 mid-call, client sees UNAVAILABLE/INTERNAL',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsp-crash-'));
      const p = await startPeer(kind, dir);
      const cc = clients(p);
      try {
        await register(cc, p, ['crash']);
        const r = await invoke(cc.push, { name: 'crash' }, [], { deadlineMs: 5000 });
        assert(
          [grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.CANCELLED, grpc.status.UNKNOWN].includes(r.status.code),
          `grpc status ${r.status.code} ${r.status.details}`,
        );
        const e = await p.exited;
        assertEq(e.code, 1, 'exit code');
      } finally {
        cc.close();
        await stopPeer(p);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { isolated: true },
  );

  check(
    '--unhealthy: DataPlane.checkHealth false',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsp-unh-'));
      const p = await startPeer(kind, dir, ['--unhealthy']);
      const cc = clients(p);
      try {
        assertEq(
          await unary(cc.dp, 'checkHealth', {}),
          { name: 'DataPlane', health: false, reason: 'Circuit Breaker Enabled' },
          'dp',
        );
      } finally {
        cc.close();
        await stopPeer(p);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { isolated: true },
  );

  return checks.filter((ch) => !(ch.skipFor || []).includes(kind));
}

// --------------------------------------------------------------------- main
async function runSuite(kind, totals) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nsp-${kind}-`));
  let peer;
  try {
    peer = await startPeer(kind, dir, ['--service', 'svc-echo=echo', '--service', 'svc-ghost=ghost']);
  } catch (err) {
    console.log(`FAIL ${kind} start: ${err.message}`);
    totals.failed++;
    return;
  }
  console.log(`PASS ${kind} start (READY, pid ${peer.child.pid})`);
  totals.passed++;
  const c = clients(peer);
  try {
    await register(c, peer, FUNCTIONS);
    console.log(`PASS ${kind} register the suite's functions through the control plane`);
    totals.passed++;
  } catch (err) {
    console.log(`FAIL ${kind} register: ${err.message}`);
    totals.failed++;
  }
  for (const ch of checksFor(kind)) {
    const t0 = Date.now();
    try {
      await Promise.race([
        ch.fn({ c, peer }),
        sleep(20000).then(() => {
          throw new Error('check timed out (20 s)');
        }),
      ]);
      console.log(`PASS ${kind} ${ch.name} (${Date.now() - t0} ms)`);
      totals.passed++;
    } catch (err) {
      console.log(`FAIL ${kind} ${ch.name}: ${err && err.message}`);
      totals.failed++;
    }
    if (peer.exit) {
      console.log(`FAIL ${kind} peer died: ${JSON.stringify(peer.exit)}\n${peer.stderr}`);
      totals.failed++;
      break;
    }
  }
  c.close();
  const e = await stopPeer(peer);
  const cleanExit = e.code === 0 || e.signal === 'SIGTERM';
  console.log(`${cleanExit ? 'PASS' : 'FAIL'} ${kind} stop on SIGTERM (${JSON.stringify(e)})`);
  totals[cleanExit ? 'passed' : 'failed']++;
  if (!cleanExit) console.log(peer.stderr);
  fs.rmSync(dir, { recursive: true, force: true });
}

(async () => {
  const totals = { passed: 0, failed: 0 };
  if (only !== 'python') await runSuite('node', totals);
  if (only !== 'node') {
    if (pythonPath) await runSuite('python', totals);
    else console.log('SKIP python peer (pass --python <venv python> to run it)');
  }
  console.log(`selftest: ${totals.passed} passed, ${totals.failed} failed`);
  process.exit(totals.failed ? 1 : 0);
})();
