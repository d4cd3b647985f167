'use strict';
// Answers with every request body this worker has been sent, in order, as a
// JSON array of strings: a test sees which requests reached the worker
// before its own (the warm-up event, tests/real_stack.rs).
const seen = [];
exports.handler = (ctx, req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    seen.push(Buffer.concat(chunks).toString());
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(seen));
  });
};
