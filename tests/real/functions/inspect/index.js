'use strict';
// Answers JSON describing what it received: method, url with query, headers
// in order (with duplicates), baggage, and the body (length and content).
exports.handler = (ctx, req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('error', e => res.destroy(e));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      method: req.method,
      url: req.url,
      rawHeaders: req.rawHeaders,
      baggage: req.baggage,
      bodyLength: body.length,
      body: body.toString('latin1'),
    }));
  });
};
