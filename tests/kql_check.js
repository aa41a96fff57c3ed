// Analyses KQL queries with Microsoft's Kusto language service (the parser and binder the
// portal's editors use), against a schema of Application Insights tables.
// stdin: {"tables": {"<name>": "(<column>:<type>, ...)"}, "queries": ["<kql>", ...]}
// stdout: [[{"severity", "message", "start"}, ...] per query]  (tests/test_monitoring.py)
"use strict";
require("@kusto/language-service-next/bridge.min.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");

const K = Kusto.Language;
const S = K.Symbols;

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { tables, queries } = JSON.parse(input);
  const symbols = Object.entries(tables).map(([name, schema]) => new S.TableSymbol.$ctor7(name, schema, null));
  const database = new S.DatabaseSymbol.$ctor3("applicationinsights", null, Bridge.toList(symbols), false);
  const globals = K.GlobalState.Default.WithDatabase(database);
  const results = queries.map((query) => {
    const diagnostics = K.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics();
    const found = [];
    for (let i = 0; i < diagnostics.Count; i++) {
      const d = diagnostics.getItem(i);
      found.push({ severity: String(d.Severity), message: d.Message, start: d.Start });
    }
    return found;
  });
  process.stdout.write(JSON.stringify(results));
});
