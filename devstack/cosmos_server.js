#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (HTTPS, its bundled self-signed certificate) through its public API rather than
// its CLI, to turn on HTTP keep-alive: the CLI answers every request with `Connection: close`, so each SDK call paid
// a TLS handshake on both sides (README.md, "The local stack").
// Usage: cosmos_server.js --host H --port P [--data-dir DIR]
//
// It also mends two things in the package (devstack/cosmos_patches.js), before the package is loaded, and with
// --data-dir keeps its state across restarts in DIR/cosmos.json (devstack/cosmos_persistence.js).
"use strict";
require("./cosmos_patches").apply();

const { createHttpsServer } = require("@vercel/cosmosdb-server");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = parseInt(option("--port", "3000"), 10);
const dataDir = option("--data-dir", null);
if (dataDir) require("./cosmos_persistence").enable(dataDir);

const server = createHttpsServer({ keepAlive: true });
// Idle keep-alive connections are closed after 30 s; the SDK's pool opens a new one when it needs to.
server.keepAliveTimeout = 30000;
server.listen(port, host, () => {
  console.log(`Ready to accept HTTPS connections at ${host}:${server.address().port} (keep-alive)`);
});
