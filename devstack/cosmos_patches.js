// Mends for the local Cosmos emulator (@vercel/cosmosdb-server and its query compiler @zeit/cosmosdb-query).
// cosmos_server.js applies them before it loads the package; tests/core/test_local_cosmos.py checks them.
"use strict";
const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const executor = require("@zeit/cosmosdb-query/lib/executor");

// Reading a document that does not exist, in a partition that holds none, made the package's handler dereference
// `undefined` and answer 500, which the SDK retries with back-off (~0.5 s for every look-up of a document not
// written yet). The real service answers 404, and so does this. It must be in place before the package's routes
// table takes the handler, hence before the package is loaded.
function answerNotFoundForMissingDocuments() {
  const readDocumentOrFail = readDocument.default;
  readDocument.default = (account, req, res, params) => {
    try {
      return readDocumentOrFail(account, req, res, params);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system.," };
    }
  };
}

// The query compiler starts every `FROM c` query by copying the collection with
// `reduce(($, c) => [...$, { c }], [])`, which copies the whole accumulator again for every document: quadratic (a
// query over 10,000 documents took 0.1 s, over 20,000 1 s, over 40,000 6 s, and the single-threaded emulator
// answered nothing else meanwhile). The generated code is rewritten to the same result in one pass.
const QUADRATIC_COPY =
  /\$c\.reduce\(\(\$, (\w+)\) => typeof \1 !== "undefined" \? \[\.\.\.\$, \{\s*(\w+): \1\s*\}\] : \$, \[\]\)/g;

function linearQueryCode(code) {
  return code.replace(
    QUADRATIC_COPY,
    (_, alias, key) => `$c.filter(${alias} => typeof ${alias} !== "undefined").map(${alias} => ({ ${key}: ${alias} }))`,
  );
}

function runQueriesInLinearTime() {
  const executeAsCompiled = executor.default;
  const rewritten = new Map();
  executor.default = (collection, options) => {
    let code = rewritten.get(options.code);
    if (code === undefined) {
      code = linearQueryCode(options.code);
      rewritten.set(options.code, code);
    }
    return executeAsCompiled(collection, { ...options, code });
  };
}

let applied = false;
function apply() {
  if (applied) return;
  applied = true;
  answerNotFoundForMissingDocuments();
  runQueriesInLinearTime();
}

module.exports = { apply, linearQueryCode };
