#!/usr/bin/env node
/*
 * BASELINE FOR BENCHMARKS: what the seed's Node gateway does. Not part of
 * noslate-fc, and not Noslated.
 *
 * The gateway that noslate-fc replaces was an express HTTP server on FC's port
 * that hands every request to the Noslated SDK (`NoslatedClient.invoke`),
 * which opens a bidi gRPC call `/noslated.data.PushServer/invoke` with
 * @grpc/grpc-js 1.8.8 on the data plane's unix socket and pipes the answer
 * back. This file rebuilds that path as closely as the benchmark needs:
 *
 *   - `NoslatedClientLike.invoke(name, readable, metadata)` follows the SDK:
 *     one grpc-js channel per data-plane socket, Noslated's channel options,
 *     a call deadline of `deadline + 1 s`, a first InvokeRequest carrying the
 *     head (name, url, method, headers, deadline, requestId), then one
 *     InvokeRequest{body} per chunk of the request stream as it arrives, then
 *     a half-close. The promise resolves on the first `result` (the head)
 *     with `{status, headers, body: Readable}`; later results are pushed into
 *     that Readable; the gRPC end ends it. An `error` before the head rejects.
 *   - the express handler (every method and path) calls it with `req`,
 *     copies status and headers (plus `x-fc-status: 200`) and pipes the body;
 *     a failure before the head becomes 404 with `x-fc-status: 404` and a
 *     JSON body, a failure after it destroys the response.
 *
 * Environment (the same names noslate-fc reads, so the harness can give both
 * the same settings): SERVER_PORT (9000), NOSLATE_FC_LISTEN (0.0.0.0),
 * NOSLATE_FC_SOCK_DIR or NOSLATED_WORKDIR (socket dir; dp-0.sock in it),
 * NOSLATE_FUNCTION (function when no x-noslate-function header),
 * NOSLATE_FC_TIMEOUT_MS (10000).
 *
 * Message schemas: tests/peer/proto (the project's reconstruction of
 * Noslated's protos), or NOSLATE_BASELINE_PROTO_DIR.
 */
'use strict';

const path = require('path');
const crypto = require('crypto');
const { Readable } = require('stream');
const express = require('express');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.NOSLATE_BASELINE_PROTO_DIR || path.join(__dirname, '..', '..', 'tests', 'peer', 'proto');
const PORT = Number(process.env.SERVER_PORT || 9000);
const HOST = process.env.NOSLATE_FC_LISTEN || '0.0.0.0';
const SOCK_DIR =
  process.env.NOSLATE_FC_SOCK_DIR ||
  (process.env.NOSLATED_WORKDIR ? path.join(process.env.NOSLATED_WORKDIR, 'socks') : null);
const DEFAULT_FUNCTION = process.env.NOSLATE_FUNCTION || null;
const TIMEOUT_MS = Number(process.env.NOSLATE_FC_TIMEOUT_MS || 10000);

if (!SOCK_DIR) {
  process.stderr.write('baseline: set NOSLATE_FC_SOCK_DIR or NOSLATED_WORKDIR\n');
  process.exit(2);
}

// ------------------------------------------------------- NoslatedClient-like

/** Channel options Noslated passes to grpc-js (docs/noslated-protocol.md §3.2, §4.2). */
const CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 10 * 1024 * 1024,
  'grpc.max_send_message_length': 10 * 1024 * 1024,
  'grpc-node.max_session_memory': 10,
};

class NoslatedClientLike {
  constructor(sockDir) {
    const definition = protoLoader.loadSync(['push-server.proto'], {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: false,
      oneofs: true,
      includeDirs: [PROTO_DIR],
    });
    const proto = grpc.loadPackageDefinition(definition);
    this.pushServer = new proto.noslated.data.PushServer(
      `unix:${path.join(sockDir, 'dp-0.sock')}`,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    );
  }

  /**
   * @param {string} name function name
   * @param {Readable} data request body stream
   * @param {{url, method, headers: [string, string][], deadline, requestId}} metadata
   * @returns {Promise<{status: number, headers: [string, string][], body: Readable}>}
   */
  invoke(name, data, metadata) {
    const deadline = metadata.deadline ?? Date.now() + 10000;
    const call = this.pushServer.invoke({ deadline: new Date(deadline + 1000) });
    call.write({
      name,
      url: metadata.url,
      method: metadata.method,
      headers: metadata.headers.map(([key, value]) => ({ key, value })),
      deadline,
      requestId: metadata.requestId,
    });
    // Request body: one InvokeRequest{body} per chunk, with backpressure.
    data.on('data', (chunk) => {
      if (!call.write({ body: chunk })) {
        data.pause();
        call.once('drain', () => data.resume());
      }
    });
    data.once('end', () => call.end());
    data.once('error', () => call.cancel());

    return new Promise((resolve, reject) => {
      let response = null;
      let settled = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        } else if (response) {
          response.body.destroy(err);
        }
      };
      call.on('data', (msg) => {
        if (msg.error) {
          const err = Object.assign(new Error(msg.error.message || 'invoke failed'), msg.error);
          fail(err);
          call.cancel();
          return;
        }
        const result = msg.result || {};
        if (!response) {
          const body = new Readable({ read: () => call.resume() });
          response = {
            status: result.status || 200,
            headers: (result.headers || []).map((kv) => [kv.key, kv.value]),
            body,
          };
          settled = true;
          resolve(response);
          return;
        }
        if (result.body && result.body.length > 0 && !response.body.push(result.body)) call.pause();
      });
      call.on('end', () => {
        if (response) response.body.push(null);
        else fail(new Error('No headers received'));
      });
      call.on('error', (err) => fail(err));
    });
  }
}

// ------------------------------------------------------------------ gateway

const client = new NoslatedClientLike(SOCK_DIR);
const app = express();

/** Headers FC manages itself, not copied from the function's response. */
const RESPONSE_DROP = new Set(['connection', 'content-length', 'date', 'keep-alive', 'server', 'transfer-encoding']);

app.use((req, res) => {
  const name = req.get('x-noslate-function') || DEFAULT_FUNCTION;
  if (!name) {
    res.status(400).set('x-fc-status', '404').json({ errorName: 'Error', errorMessage: 'no function' });
    return;
  }
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
  }
  const metadata = {
    url: req.url,
    method: req.method,
    headers,
    deadline: Date.now() + TIMEOUT_MS,
    requestId: req.get('x-fc-request-id') || crypto.randomUUID(),
  };
  client.invoke(name, req, metadata).then(
    (response) => {
      res.status(response.status);
      const grouped = new Map();
      for (const [k, v] of response.headers) {
        const key = k.toLowerCase();
        if (RESPONSE_DROP.has(key) || key.startsWith('x-fc-')) continue;
        if (!grouped.has(key)) grouped.set(key, []);
        grouped.get(key).push(v);
      }
      for (const [k, v] of grouped) res.setHeader(k, v.length === 1 ? v[0] : v);
      res.setHeader('x-fc-status', '200');
      response.body.once('error', () => res.destroy());
      response.body.pipe(res);
    },
    (err) => {
      if (res.headersSent) return res.destroy();
      res
        .status(404)
        .set('x-fc-status', '404')
        .json({ errorName: err.name || 'Error', errorMessage: err.message || String(err) });
    },
  );
});

const server = app.listen(PORT, HOST, () => {
  const a = server.address();
  process.stderr.write(`baseline: listening on ${a.address}:${a.port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
