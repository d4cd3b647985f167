'use strict';
// Waits ?ms=N (default 1000) after reading the body, then answers "waited N".
exports.handler = (ctx, req, res) => {
  const m = /[?&]ms=(\d+)/.exec(req.url);
  const ms = m ? Number(m[1]) : 1000;
  req.resume();
  req.on('end', () => setTimeout(() => res.end(`waited ${ms}`), ms));
};
