'use strict';
// Drips ?n=N chunks (default 5) "chunk i\n", one every ?ms=M (default 100).
exports.handler = (ctx, req, res) => {
  const n = Number((/[?&]n=(\d+)/.exec(req.url) || [0, 5])[1]);
  const ms = Number((/[?&]ms=(\d+)/.exec(req.url) || [0, 100])[1]);
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain' });
  let i = 0;
  const tick = () => {
    if (i === n) return res.end();
    res.write(`chunk ${i++}\n`);
    setTimeout(tick, ms);
  };
  tick();
};
