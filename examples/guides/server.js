// SPDX-License-Identifier: MIT
// A Node.js HTTP server under batond (docs/guides/node.md): the listening
// socket is fd 3 (LISTEN_FDS); SIGTERM (the drain) stops accepting, closes this
// process's copy of the listener and lets the requests in flight finish.
'use strict';
const http = require('http');

const LISTEN_FDS_START = 3; // fixed by the socket-activation contract

if (process.env.LISTEN_PID !== String(process.pid) || !(Number(process.env.LISTEN_FDS) >= 1)) {
  console.error('server.js: no listening socket at fd 3: run it under batond (or systemd)');
  process.exit(1);
}

const generation = process.env.BATON_GENERATION || '0';
const worker = process.env.BATON_WORKER || '0';
const server = http.createServer((req, res) => {
  const body = `hello from node, generation ${generation} worker ${worker} pid ${process.pid}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});

// Node calls listen(2) again on an inherited socket, with this backlog: the
// accept queue is one for every holder, so keep batond's (4096 by default)
// rather than Node's 511.
server.listen({ fd: LISTEN_FDS_START, backlog: 4096 });

process.on('SIGTERM', () => {
  // Stops accepting and closes our copy of the listener (close(2), never
  // shutdown(2): batond and the next generation share the socket), closes idle
  // keep-alive connections (Node 19 and later), and calls back when the
  // requests in flight are done.
  server.close(() => process.exit(0));
});
