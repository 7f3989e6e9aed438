#!/usr/bin/env node
// Validate prometheus-operator objects (ServiceMonitor, PodMonitor, PrometheusRule, ...) against
// the JSON schemas @kubernetes-models/prometheus-operator generates from the operator's CRDs.
// Reads a JSON array of objects (or one object) from stdin.
// Prints one JSON line per object: {apiVersion, kind, name, valid, errors}  (the same shape as
// tools/validators/validate.mjs, so the two can be merged).
// Exit status: 0 all valid, 1 an object is invalid or has no validator, 2 bad input.
import { readFileSync } from "node:fs";

const GROUP = "monitoring.coreos.com";
const PACKAGE = "@kubernetes-models/prometheus-operator";

async function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  if (group !== GROUP || !version || !/^[A-Za-z]+$/.test(kind)) return null;
  try {
    const module = await import(`${PACKAGE}/${group}/${version}/${kind}`);
    return module[kind] ?? null;
  } catch (err) {
    if (err.code === "ERR_MODULE_NOT_FOUND" || err.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
    throw err;
  }
}

function describeErrors(err) {
  if (Array.isArray(err?.errors)) {
    return err.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`);
  }
  return [String(err?.message ?? err)];
}

let objects;
try {
  const parsed = JSON.parse(readFileSync(0, "utf8"));
  objects = Array.isArray(parsed) ? parsed : [parsed];
} catch (err) {
  console.error(`cannot read input: ${err.message}`);
  process.exit(2);
}
if (objects.length === 0) {
  console.error("no objects to validate");
  process.exit(2);
}

let failed = false;
for (const object of objects) {
  const result = { apiVersion: object?.apiVersion, kind: object?.kind, name: object?.metadata?.name, valid: false, errors: [] };
  const Model = await modelFor(object?.apiVersion, object?.kind);
  if (Model === null) {
    result.errors = [`no validator for ${object?.apiVersion} ${object?.kind} (only ${GROUP})`];
  } else {
    try {
      new Model(object).validate();
      result.valid = true;
    } catch (err) {
      result.errors = describeErrors(err);
    }
  }
  failed ||= !result.valid;
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
