'use strict';
// The image's example function: answers with the request's body, byte for
// byte, streamed as it arrives. Replace it with your own (README "The image").
exports.handler = (ctx, req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  req.on('error', e => res.destroy(e));
  req.pipe(res);
};
