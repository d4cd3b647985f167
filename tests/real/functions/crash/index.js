'use strict';
// The worker process exits: ?when=before exits before any head; by default
// it sends the head and 64 KiB, then exits mid-response.
exports.handler = (ctx, req, res) => {
  req.resume();
  if (/[?&]when=before/.test(req.url)) {
    setTimeout(() => process.exit(3), 10);
    return;
  }
  res.writeHead(200);
  res.write(Buffer.alloc(64 * 1024, 0x61), () => setTimeout(() => process.exit(3), 50));
};
