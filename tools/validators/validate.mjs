#!/usr/bin/env node
// Validate Kubernetes custom resources (Gateway API, Istio, Prometheus Operator) against the JSON schemas generated
// from their CRDs by @kubernetes-models. Reads YAML or JSON (multi-document YAML too) from the
// files named on the command line, or from stdin when there are none.
// Prints one JSON line per object: {source, apiVersion, kind, name, valid, errors}.
// Exit status: 0 all valid, 1 an object is invalid or has no known validator, 2 bad input.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";

// API group -> npm package that carries its generated models
const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "networking.istio.io": "@kubernetes-models/istio",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

async function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version || !/^[A-Za-z]+$/.test(kind)) return null;
  try {
    const module = await import(`${pkg}/${group}/${version}/${kind}`);
    return module[kind] ?? null;
  } catch (err) {
    // an unknown version or kind of a known group: no validator, reported as such
    if (err.code === "ERR_MODULE_NOT_FOUND" || err.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
    throw err;
  }
}

function readSources(args) {
  if (args.length === 0) return [["<stdin>", readFileSync(0, "utf8")]];
  return args.map((path) => [path, readFileSync(path, "utf8")]);
}

function describeErrors(err) {
  if (Array.isArray(err?.errors)) {
    return err.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`);
  }
  return [String(err?.message ?? err)];
}

async function main() {
  let failed = false;
  let objects = [];
  try {
    for (const [source, text] of readSources(process.argv.slice(2))) {
      for (const doc of yaml.loadAll(text)) {
        if (doc == null) continue;
        const items = Array.isArray(doc) ? doc : doc.kind?.endsWith("List") && Array.isArray(doc.items) ? doc.items : [doc];
        objects.push(...items.map((object) => [source, object]));
      }
    }
  } catch (err) {
    console.error(`cannot read input: ${err.message}`);
    process.exit(2);
  }
  if (objects.length === 0) {
    console.error("no objects to validate");
    process.exit(2);
  }
  for (const [source, object] of objects) {
    const result = {
      source,
      apiVersion: object?.apiVersion,
      kind: object?.kind,
      name: object?.metadata?.name,
      valid: false,
      errors: [],
    };
    let Model = null;
    try {
      Model = await modelFor(object?.apiVersion, object?.kind);
    } catch (err) {
      result.errors = [`cannot load a validator: ${err.message}`];
    }
    if (Model === null && result.errors.length === 0) {
      result.errors = [`no validator for ${object?.apiVersion} ${object?.kind} (known groups: ${Object.keys(PACKAGES).join(", ")})`];
    } else if (Model !== null) {
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
}

main();
