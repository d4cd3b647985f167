'use strict';
// Streaming echo: the request body back, byte for byte, as it arrives.
exports.handler = (ctx, req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  req.on('error', e => res.destroy(e));
  req.pipe(res);
};
