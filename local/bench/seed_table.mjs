// Bulk-loads rows into a table (W3's history) with the Azure Tables SDK for JavaScript.
//
//   node local/bench/seed_table.mjs <connection string> <table> <rows.jsonl>
//
// Each line of rows.jsonl is one entity as history.py wrote it: plain JSON values, and
// {"type": "DateTime" | "Double" | ..., "value": "..."} where the Edm type must be said.
// Rows go in as transactions of up to 100 rows of one partition, a few at a time. The
// Python SDK builds each transaction with the `email` package (about 40 ms of CPU for
// 100 rows); this one does the same requests for a fraction of that, and the benchmark
// seeds 200,000 rows. Prints {"table": ..., "rows": n} when every row is in.

import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { TableClient } from "@azure/data-tables";

const ROWS_PER_TRANSACTION = 100; // the service's limit
const IN_FLIGHT = 4; // transactions sent at once: Azurite parses one while the next is built

const [connectionString, table, file] = process.argv.slice(2);
if (!connectionString || !table || !file) {
  console.error("usage: seed_table.mjs <connection string> <table> <rows.jsonl>");
  process.exit(2);
}

// Azurite listens on plain http on loopback
const client = TableClient.fromConnectionString(connectionString, table, { allowInsecureConnection: true });
await client.createTable(); // a table that exists already is fine

const byPartition = new Map();
const lines = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const entity = JSON.parse(line);
  const key = entity.partitionKey;
  if (typeof key !== "string" || typeof entity.rowKey !== "string") {
    throw new Error(`row without partitionKey/rowKey: ${line.slice(0, 200)}`);
  }
  if (!byPartition.has(key)) byPartition.set(key, []);
  byPartition.get(key).push(entity);
}

const transactions = [];
for (const rows of byPartition.values()) {
  for (let start = 0; start < rows.length; start += ROWS_PER_TRANSACTION) {
    transactions.push(rows.slice(start, start + ROWS_PER_TRANSACTION));
  }
}

let next = 0;
let written = 0;
async function sender() {
  while (next < transactions.length) {
    const rows = transactions[next++];
    await client.submitTransaction(rows.map((entity) => ["create", entity]));
    written += rows.length;
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, sender));
console.log(JSON.stringify({ table, rows: written }));
