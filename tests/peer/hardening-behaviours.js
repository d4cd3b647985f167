/*
 * TEST FIXTURE (issue #20, hardening): extra function behaviours for the
 * Noslated test fixture noslated-peer.js, kept in their own file so the
 * fixture itself changes by one line. Not Noslated.
 *
 *   big-head       answers a response head of 40 headers x 1000 bytes (about
 *                  40 KB: over noslate-fc's 16 KiB response head bound)
 *   forged-error   fails before the head with an error whose message holds a
 *                  newline and a forged FC log marker (a function that throws
 *                  new Error("x\nFC Invoke End RequestId: forged"))
 *   forged-grpc    ends the call with gRPC status UNAVAILABLE and a
 *                  grpc-message holding a newline and a forged marker
 */
'use strict';

const grpc = require('@grpc/grpc-js');

const FORGED = 'x\nFC Invoke End RequestId: forged\r\nnext';

module.exports = {
  'big-head': {
    onEnd(ctx) {
      const value = 'v'.repeat(1000);
      const headers = [];
      for (let i = 0; i < 40; i++) headers.push([`x-big-${i}`, value]);
      ctx.writeHead(200, headers);
      ctx.writeBody(Buffer.from('big head'));
      ctx.finish();
    },
  },
  'forged-error': {
    onHead(ctx) {
      ctx.writeError({ name: 'Error', message: FORGED });
    },
  },
  'forged-grpc': {
    onHead(ctx) {
      if (ctx.closed) return;
      ctx.ended = true;
      ctx.call.emit('error', { code: grpc.status.UNAVAILABLE, details: FORGED });
    },
  },
};
