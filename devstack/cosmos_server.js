#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (HTTPS, its bundled self-signed certificate) through its public API rather than
// its CLI, to turn on HTTP keep-alive: the CLI answers every request with `Connection: close`, so each SDK call paid
// a TLS handshake on both sides (notes/local-emulators-facts.md). Usage: cosmos_server.js --host H --port P
//
// It also mends one answer: reading a document that does not exist in a partition that holds none made the
// package's handler dereference `undefined` and answer 500, which the SDK retries with back-off (~0.5 s for every
// look-up of a document not written yet). The real service answers 404; so does this launcher. The patch must be in
// place before the package's routes table takes the handler, hence before the package itself is required.
"use strict";
const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");

const readDocumentOrNotFound = readDocument.default;
readDocument.default = (account, req, res, params) => {
  try {
    return readDocumentOrNotFound(account, req, res, params);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    res.statusCode = 404;
    return { code: "NotFound", message: "Entity with the specified id does not exist in the system.," };
  }
};

const { createHttpsServer } = require("@vercel/cosmosdb-server");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = parseInt(option("--port", "3000"), 10);

const server = createHttpsServer({ keepAlive: true });
// Idle keep-alive connections are closed after 30 s; the SDK's pool opens a new one when it needs to.
server.keepAliveTimeout = 30000;
server.listen(port, host, () => {
  console.log(`Ready to accept HTTPS connections at ${host}:${server.address().port} (keep-alive)`);
});
