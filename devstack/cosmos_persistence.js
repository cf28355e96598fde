// Snapshots of the local Cosmos emulator's state (@vercel/cosmosdb-server keeps everything in memory), so that a
// restart of the emulator keeps its databases, containers and documents, as Azurite and the Service Bus emulator do.
//
// - On start, the account is rebuilt from `<dir>/cosmos.json` (when there is one) before the first request: every
//   database, container and document with its own _rid, _self, _etag and _ts, and each level's id counter.
// - A snapshot is written whenever something changed, at most every `interval` (2 s, or ten times as long as the
//   last snapshot took, so writing never takes more than ~10 % of the emulator's time), and once more on SIGTERM or
//   SIGINT before the process exits. Each is written to a temporary file and renamed over the last: a crash while
//   writing leaves the previous snapshot whole. A kill -9 loses what changed since the last snapshot (up to the
//   interval: ~2 s for a small data set).
"use strict";
const fs = require("fs");
const path = require("path");
const accountModule = require("@vercel/cosmosdb-server/lib/account");
const itemsModule = require("@vercel/cosmosdb-server/lib/account/items");

const SNAPSHOT_FILE = "cosmos.json";
const MIN_INTERVAL_MS = 2000;
const FORMAT = 1;

let dirty = false;

// Every change to a database, container or document goes through Items._set (create, replace, upsert, patch) or
// Items.delete.
function trackChanges() {
  const proto = itemsModule.default.prototype;
  const set = proto._set;
  const remove = proto.delete;
  proto._set = function trackedSet(data) {
    dirty = true;
    return set.call(this, data);
  };
  proto.delete = function trackedDelete(...args) {
    dirty = true;
    return remove.apply(this, args);
  };
}

function dump(items, children) {
  return {
    ridCount: items._ridCount,
    items: [...items._data.values()].map(item => ({ data: item.read(), ...(children ? children(item) : {}) })),
  };
}

function snapshotOf(account) {
  return {
    format: FORMAT,
    databases: dump(account.databases, database => ({
      collections: dump(database.collections, collection => ({ documents: dump(collection.documents) })),
    })),
  };
}

function load(items, saved, restoreChildren) {
  for (const entry of saved.items) {
    const data = items._set(entry.data);
    if (restoreChildren) restoreChildren(items._data.get(data._rid), entry);
  }
  items._ridCount = saved.ridCount;
}

function restore(account, snapshot) {
  if (snapshot.format !== FORMAT) throw new Error(`unknown snapshot format ${snapshot.format}`);
  let documents = 0;
  load(account.databases, snapshot.databases, (database, entry) =>
    load(database.collections, entry.collections, (collection, saved) => {
      load(collection.documents, saved.documents);
      documents += saved.documents.items.length;
    }),
  );
  return documents;
}

function enable(dataDir, log = console.log) {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, SNAPSHOT_FILE);
  let account = null;
  let interval = MIN_INTERVAL_MS;

  // index.js builds the account (`new Account(host, port)`) when the server starts listening, through the module's
  // `default` export read at that moment: a subclass put there sees it built and fills it before any request.
  const Account = accountModule.default;
  accountModule.default = class PersistentAccount extends Account {
    constructor(...args) {
      super(...args);
      account = this;
      if (fs.existsSync(file)) {
        const started = Date.now();
        const documents = restore(this, JSON.parse(fs.readFileSync(file, "utf8")));
        log(`restored ${documents} documents from ${file} in ${Date.now() - started} ms`);
      }
      dirty = false;
    }
  };
  trackChanges();

  function save() {
    if (!account || !dirty) return;
    const started = Date.now();
    dirty = false;
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(temporary, JSON.stringify(snapshotOf(account)));
      fs.renameSync(temporary, file);
    } finally {
      // Also after a failure (a data set past V8's largest string): never spend more than ~10 % of the time here.
      interval = Math.max(MIN_INTERVAL_MS, 10 * (Date.now() - started));
    }
  }

  function saveSafely() {
    try {
      save();
    } catch (error) {
      dirty = true; // try again next time
      console.error(`cosmos snapshot failed: ${error.stack || error}`);
    }
  }

  (function schedule() {
    setTimeout(() => {
      saveSafely();
      schedule();
    }, interval).unref();
  })();
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      saveSafely();
      process.exit(0);
    });
  }
  return { save, file };
}

module.exports = { enable, snapshotOf, restore, SNAPSHOT_FILE };
