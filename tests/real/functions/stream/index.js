'use strict';
// Streams ?bytes=N (default 1 MiB) back in ?chunk=K byte writes (default
// 64 KiB): byte i is (i * 7 + 3) & 0xff, so a client can check every byte.
function param(url, name, dflt) {
  const m = new RegExp(`[?&]${name}=(\\d+)`).exec(url);
  return m ? Number(m[1]) : dflt;
}
exports.handler = (ctx, req, res) => {
  const total = param(req.url, 'bytes', 1 << 20);
  const chunk = Math.max(1, param(req.url, 'chunk', 1 << 16));
  req.resume();
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  let sent = 0;
  const next = () => {
    while (sent < total) {
      const n = Math.min(chunk, total - sent);
      const buf = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) buf[i] = ((sent + i) * 7 + 3) & 0xff;
      sent += n;
      if (!res.write(buf)) return res.once('drain', next);
    }
    res.end();
  };
  next();
};
