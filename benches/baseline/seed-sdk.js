#!/usr/bin/env node
/*
 * BASELINE FOR BENCHMARKS: the seed's gateway on the REAL Noslate stack.
 * Not part of noslate-fc, and not Noslated.
 *
 * express on FC's port, Noslate's own SDK behind it: `NoslatedClient` is
 * loaded from the built noslated (NOSLATED_SDK = <cache>/src/noslated/build/sdk/index.js,
 * from `scripts/real-noslate.sh build`; nothing of noslated is copied here),
 * `agent.start()`, optionally `agent.setFunctionProfile(profiles)` (the seed's
 * way of giving functions to Noslated), then for every request
 * `agent.invoke(name, req, metadata)`, status and headers copied,
 * `response.pipe(res)`; a failure before the head is 404 + `x-fc-status: 404`
 * with a JSON body, a failure after it destroys the response.
 *
 * Environment: NOSLATED_SDK (required); the stack's own variables
 * (NOSLATED_WORKDIR etc., read by the SDK's config); SERVER_PORT (9000);
 * NOSLATE_FC_LISTEN (0.0.0.0); NOSLATE_FUNCTION (function when no
 * x-noslate-function header); NOSLATE_FUNCTION_PROFILES (a JSON file of
 * profiles to push with setFunctionProfile; unset: push nothing);
 * NOSLATE_FC_TIMEOUT_MS (10000). Prints "baseline: listening ..." on stderr.
 */
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const express = require('express');

const SDK = process.env.NOSLATED_SDK;
if (!SDK) {
  process.stderr.write('seed-sdk: set NOSLATED_SDK to <noslated>/build/sdk/index.js\n');
  process.exit(2);
}
const { NoslatedClient } = require(SDK);

const PORT = Number(process.env.SERVER_PORT || 9000);
const HOST = process.env.NOSLATE_FC_LISTEN || '0.0.0.0';
const DEFAULT_FUNCTION = process.env.NOSLATE_FUNCTION || null;
const TIMEOUT_MS = Number(process.env.NOSLATE_FC_TIMEOUT_MS || 10000);
const PROFILES = process.env.NOSLATE_FUNCTION_PROFILES || null;

const agent = new NoslatedClient();
const t0 = Date.now();
const log = (what) => process.stderr.write(`seed-sdk: +${Date.now() - t0} ms ${what}\n`);

const ready = (async () => {
  await agent.start();
  log('sdk started (both planes connected)');
  if (PROFILES) {
    await agent.setFunctionProfile(JSON.parse(fs.readFileSync(PROFILES, 'utf8')));
    log('profiles set');
  }
})();

/** Headers FC manages itself, not copied from the function's response. */
const RESPONSE_DROP = new Set(['connection', 'content-length', 'date', 'keep-alive', 'server', 'transfer-encoding']);

function fail(res, status, err) {
  if (res.headersSent) return res.destroy();
  res
    .status(status)
    .set('x-fc-status', String(status))
    .json({ errorName: (err && err.name) || 'Error', errorMessage: (err && err.message) || String(err) });
}

const app = express();

app.post('/initialize', (req, res) => {
  ready.then(
    () => res.status(200).set('x-fc-status', '200').end(),
    (err) => fail(res, 404, err),
  );
});

app.use((req, res) => {
  const name = req.get('x-noslate-function') || DEFAULT_FUNCTION;
  if (!name) return fail(res, 404, new Error('no function'));
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
  }
  const metadata = {
    url: req.url,
    method: req.method,
    headers,
    baggage: [['fc-invocation-type', req.path === '/invoke' ? 'event' : 'http']],
    deadline: Date.now() + TIMEOUT_MS,
    requestId: req.get('x-fc-request-id') || crypto.randomUUID(),
  };
  agent.invoke(name, req, metadata).then(
    (response) => {
      res.status(response.status);
      const grouped = new Map();
      for (const [k, v] of response.metadata.headers) {
        const key = k.toLowerCase();
        if (RESPONSE_DROP.has(key) || key.startsWith('x-fc-')) continue;
        if (!grouped.has(key)) grouped.set(key, []);
        grouped.get(key).push(v);
      }
      for (const [k, v] of grouped) res.setHeader(k, v.length === 1 ? v[0] : v);
      res.setHeader('x-fc-status', '200');
      response.once('error', () => res.destroy());
      response.pipe(res);
    },
    (err) => fail(res, 404, err),
  );
});

ready.then(
  () => {
    const server = app.listen(PORT, HOST, () => {
      const a = server.address();
      log(`listening on ${a.address}:${a.port}`);
    });
  },
  (err) => {
    log(`start failed: ${err && err.stack}`);
    process.exit(1);
  },
);

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
