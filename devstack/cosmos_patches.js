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

// A read-many (the SDK's read_items: `SELECT * FROM c WHERE ( ( c.id = @param_id0 AND c.pk = ... ) OR ... )`, or
// `c.id IN (...)`) names every id it can return, but the package evaluates it against every document of the
// container: 26 ms for 200 documents in a near-empty container, 357 ms beside 30,000 others, where the service looks
// the ids up. Such a query now runs, unchanged, over only the documents with those ids (the same rows: a document
// with another id cannot satisfy it). Any other query runs as before.
function isIdOf(node, alias) {
  return (
    node.type === "scalar_member_expression" &&
    node.object.type === "identifier" &&
    node.object.name === alias &&
    ((!node.computed && node.property.type === "identifier" && node.property.name === "id") ||
      (node.computed && node.property.type === "string_constant" && node.property.value === "id"))
  );
}

// The ids a condition is limited to, as the parameter names or string constants that give them; null if it is not
// limited to named ids.
function idSources(node, alias) {
  if (node.type === "scalar_binary_expression") {
    if (node.operator === "OR") {
      const left = idSources(node.left, alias);
      const right = left && idSources(node.right, alias);
      return right && left.concat(right);
    }
    if (node.operator === "AND") return idSources(node.left, alias) || idSources(node.right, alias);
    if (node.operator === "=") {
      const [member, value] = isIdOf(node.left, alias) ? [node.left, node.right] : [node.right, node.left];
      if (isIdOf(member, alias) && (value.type === "parameter_name" || value.type === "string_constant")) return [value];
    }
    return null;
  }
  if (node.type === "scalar_in_expression" && isIdOf(node.value, alias)) {
    const named = node.list.every(v => v.type === "parameter_name" || v.type === "string_constant");
    return named ? node.list : null;
  }
  return null;
}

function readManySources(ast) {
  const query = ast.body;
  if (!query || query.type !== "select_query" || !query.where || query.from.joins.length) return null;
  const source = query.from.source;
  const collection = source.expression && source.expression.expression;
  if (!collection || collection.type !== "identifier") return null;
  const alias = source.alias ? source.alias.name : collection.name;
  return idSources(query.where.condition, alias);
}

function readManyByIds() {
  const Items = require("@vercel/cosmosdb-server/lib/account/items").default;
  const queryEveryDocument = Items.prototype.query;
  const sourcesOf = new WeakMap(); // parsed query -> its id sources (null: not a read-many)
  Items.prototype.query = function query(params, options) {
    const parsed = this._getQuery(params.query);
    if (!sourcesOf.has(parsed)) sourcesOf.set(parsed, readManySources(parsed.ast));
    const sources = sourcesOf.get(parsed);
    if (!sources) return queryEveryDocument.call(this, params, options);
    const values = new Map((params.parameters || []).map(p => [p.name, p.value]));
    const ids = new Set(sources.map(s => (s.type === "parameter_name" ? values.get(s.name) : s.value)));
    const everyDocument = this._data;
    this._data = new Map([...everyDocument].filter(([, item]) => ids.has(item.read().id)));
    try {
      return queryEveryDocument.call(this, params, options); // synchronous: nothing else runs meanwhile
    } finally {
      this._data = everyDocument;
    }
  };
}

let applied = false;
function apply() {
  if (applied) return;
  applied = true;
  answerNotFoundForMissingDocuments();
  runQueriesInLinearTime();
  readManyByIds();
}

module.exports = { apply, linearQueryCode, readManySources };
