// Real-client checks against noslate-fc, driven by tests/clients.rs.
//
// usage: node client.js (http|fetch) <port> <port-big>
//
// <port> runs with a 4 MiB body limit (so 8 MiB gets 413), <port-big> with
// the default limit (8 MiB to an unknown function gets the data plane's 404).
// Prints one line per check: "RESULT <client> <check> ok|FAIL <detail>".
'use strict';
const http = require('node:http');

const [client, port, portBig] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const MIB = 1024 * 1024;

function pattern(n) {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + 7) % 251;
  return out;
}
function body(n) {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = i % 256;
  return out;
}
function report(check, ok, detail = '') {
  console.log(`RESULT ${client} ${check} ${ok ? 'ok' : 'FAIL'} ${detail}`.trimEnd());
}
const url = (p = port) => `http://127.0.0.1:${p}/invoke`;

// ------------------------------------------------------------ node:http
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// One request; resolves {status, body, reused, error}. An error after the
// response (ECONNRESET while still uploading) is reported too.
function request(data, { fn = 'echo', p = port, chunked = false } = {}) {
  return new Promise((resolve) => {
    const headers = { 'x-noslate-function': fn };
    if (!chunked) headers['content-length'] = data.length;
    const req = http.request(url(p), { method: 'POST', agent, headers });
    const result = { status: 0, body: null, reused: false, error: null };
    let settled = false;
    const done = () => {
      if (!settled) {
        settled = true;
        // Give a late ECONNRESET a moment to show.
        setTimeout(() => resolve(result), 100);
      }
    };
    req.on('error', (e) => {
      result.error = result.error || e.code || String(e);
      done();
    });
    req.on('response', (res) => {
      result.status = res.statusCode;
      result.reused = req.reusedSocket;
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        result.body = Buffer.concat(parts);
        done();
      });
      res.on('error', (e) => {
        result.error = result.error || e.code;
        done();
      });
    });
    if (chunked) {
      for (let i = 0; i < data.length; i += 100000) req.write(data.subarray(i, i + 100000));
      req.end();
    } else {
      req.end(data);
    }
  });
}

function* httpChecks() {
  yield ['echo-small', async () => {
    const r = await request(Buffer.from('hello node'));
    return r.status === 200 && r.body.equals(Buffer.from('hello node')) && !r.error;
  }];
  const big = body(MIB);
  yield ['echo-1MiB', async () => {
    const r = await request(big);
    return r.status === 200 && r.body.equals(big) && !r.error;
  }];
  yield ['echo-chunked', async () => {
    const r = await request(big, { chunked: true });
    return r.status === 200 && r.body.equals(big) && !r.error;
  }];
  yield ['keep-alive', async () => {
    let reused = 0;
    for (let i = 0; i < 5; i++) {
      const data = Buffer.from(`reuse ${i}`);
      const r = await request(data);
      if (r.status !== 200 || !r.body.equals(data) || r.error) return false;
      if (r.reused) reused++;
    }
    return reused >= 4;
  }];
  const eight = body(8 * MIB);
  yield ['413-8MiB', async () => {
    const r = await request(eight);
    return r.status === 413 && !r.error ? true : `status ${r.status} error ${r.error}`;
  }];
  yield ['404-8MiB', async () => {
    const r = await request(eight, { fn: 'no-such-function', p: portBig });
    return r.status === 404 && !r.error ? true : `status ${r.status} error ${r.error}`;
  }];
  const n = 3 * MIB + 5;
  yield ['streamed', async () => {
    const r = await request(Buffer.alloc(0), { fn: `big-${n}` });
    return r.status === 200 && r.body.equals(pattern(n)) && !r.error;
  }];
}

// ------------------------------------------------------------ fetch (undici)
async function fpost(data, { fn = 'echo', p = port, duplex } = {}) {
  const init = { method: 'POST', headers: { 'x-noslate-function': fn }, body: data };
  if (duplex) init.duplex = duplex;
  const r = await fetch(url(p), init);
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
}

// Established connections from this process to the port (/proc/net/tcp).
function connectionsTo(p) {
  const hex = p.toString(16).toUpperCase().padStart(4, '0');
  const lines = require('node:fs').readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1);
  return lines.filter((l) => {
    const f = l.trim().split(/\s+/);
    return f.length > 3 && f[2].endsWith(`:${hex}`) && f[3] === '01';
  }).length;
}

function* fetchChecks() {
  yield ['echo-small', async () => {
    const r = await fpost(Buffer.from('hello fetch'));
    return r.status === 200 && r.body.equals(Buffer.from('hello fetch'));
  }];
  const big = body(MIB);
  yield ['echo-1MiB', async () => {
    const r = await fpost(big);
    return r.status === 200 && r.body.equals(big);
  }];
  yield ['echo-chunked', async () => {
    // A stream body without a length: undici sends it chunked.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < big.length; i += 100000) c.enqueue(big.subarray(i, i + 100000));
        c.close();
      },
    });
    const r = await fpost(stream, { duplex: 'half' });
    return r.status === 200 && r.body.equals(big);
  }];
  yield ['keep-alive', async () => {
    for (let i = 0; i < 5; i++) {
      const data = Buffer.from(`reuse ${i}`);
      const r = await fpost(data);
      if (r.status !== 200 || !r.body.equals(data)) return false;
    }
    // Sequential requests on one pooled connection: only one is open (the
    // ones of the checks before stay pooled too, so count, not equal 1).
    const open = connectionsTo(port);
    return open >= 1 && open <= 3 ? true : `${open} connections open`;
  }];
  const eight = body(8 * MIB);
  yield ['413-8MiB', async () => (await fpost(eight)).status === 413];
  yield ['404-8MiB', async () => (await fpost(eight, { fn: 'no-such-function', p: portBig })).status === 404];
  const n = 3 * MIB + 5;
  yield ['streamed', async () => {
    const r = await fetch(url(), { method: 'POST', headers: { 'x-noslate-function': `big-${n}` }, body: '' });
    const parts = [];
    for await (const part of r.body) parts.push(Buffer.from(part));
    return r.status === 200 && Buffer.concat(parts).equals(pattern(n));
  }];
}

(async () => {
  for (const [name, check] of client === 'http' ? httpChecks() : fetchChecks()) {
    try {
      const ok = await check();
      report(name, ok === true, ok === true ? '' : ok || 'wrong status or bytes');
    } catch (e) {
      const cause = e.cause ? ` (${e.cause.code || e.cause.message})` : '';
      report(name, false, `${e.name}: ${e.message}${cause}`.replace(/\n/g, ' ').slice(0, 200));
    }
  }
  agent.destroy();
  process.exit(0);
})();
