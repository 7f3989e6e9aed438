#!/usr/bin/env node
// Load flagd flag-definition files with flagd's own evaluator core (@openfeature/flagd-core),
// with strict schema validation, and evaluate every flag with an empty context.
// Input: flagd JSON files, or ConfigMap YAML/JSON carrying `data["flags.json"]`; stdin if no files.
// Prints one JSON line per input: {source, valid, errors, values: {flag: value}}.
// Exit status: 0 all valid, 1 an input is invalid.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { FlagdCore, MemoryStorage } from "@openfeature/flagd-core";

const FLAGS_KEY = "flags.json";
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

function flagText(text) {
  const doc = yaml.load(text);
  if (doc && doc.kind === "ConfigMap") {
    if (typeof doc.data?.[FLAGS_KEY] !== "string") throw new Error(`ConfigMap has no data["${FLAGS_KEY}"]`);
    return doc.data[FLAGS_KEY];
  }
  return text;
}

// The flag's type is not exposed: try each type flagd knows until one is not a type mismatch.
function resolveAny(core, key) {
  let resolution;
  for (const type of ["boolean", "string", "number", "object"]) {
    resolution = core.resolve(type, key, undefined, {});
    if (resolution.errorCode !== "TYPE_MISMATCH") return resolution;
  }
  return resolution;
}

const inputs = process.argv.length > 2
  ? process.argv.slice(2).map((path) => [path, readFileSync(path, "utf8")])
  : [["<stdin>", readFileSync(0, "utf8")]];

let failed = false;
for (const [source, text] of inputs) {
  const result = { source, valid: false, errors: [], values: {} };
  try {
    const storage = new MemoryStorage(quiet);
    storage.setConfigurations(flagText(text), true); // strict: flagd's JSON schema
    const core = new FlagdCore(storage, quiet);
    for (const key of core.getFlags().keys()) {
      const resolution = resolveAny(core, key);
      if (resolution.errorCode) {
        result.errors.push(`${key}: ${resolution.errorCode} ${resolution.errorMessage ?? ""}`.trim());
      } else {
        result.values[key] = resolution.value;
      }
    }
    result.valid = result.errors.length === 0;
  } catch (err) {
    result.errors = [String(err.message ?? err) + (err.cause ? `: ${err.cause.message ?? err.cause}` : "")];
  }
  failed ||= !result.valid;
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
