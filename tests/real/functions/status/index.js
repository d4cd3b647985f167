'use strict';
// Sets the status and headers that the JSON body asks for:
// {"status":201,"headers":[["x-a","1"],["set-cookie","a"]],"body":"text"}.
// Repeated names become one header with several values.
exports.handler = (ctx, req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const want = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    res.statusCode = want.status || 200;
    const grouped = {};
    for (const [k, v] of want.headers || []) (grouped[k] = grouped[k] || []).push(v);
    for (const [k, v] of Object.entries(grouped)) res.setHeader(k, v.length === 1 ? v[0] : v);
    res.end(want.body || '');
  });
};
