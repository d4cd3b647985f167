'use strict';
// Throws: synchronously by default, ?async=1 rejects after reading the body.
exports.handler = async (ctx, req, res) => {
  if (/[?&]async=1/.test(req.url)) {
    await new Promise(resolve => { req.resume(); req.on('end', resolve); });
    throw new Error('thrown after the body');
  }
  throw new Error('thrown at once');
};
