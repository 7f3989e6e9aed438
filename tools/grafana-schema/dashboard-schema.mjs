// Prints a JSON schema (draft-07) for Grafana's classic dashboard model (schemaVersion 42),
// generated from the TypeScript types Grafana itself publishes in @grafana/schema
// (dist/types/raw/dashboard/x/dashboard_types.gen.d.ts, generated from Grafana's CUE kinds).
// Usage: node dashboard-schema.mjs > dashboard.schema.json
import { defaultDashboard } from "@grafana/schema";
import { createGenerator } from "ts-json-schema-generator";
import { createRequire } from "node:module";
import path from "node:path";

// Closed objects catch misspelled keys. Two definitions stay open: the types list only the
// fields common to every datasource, while Grafana stores datasource-specific annotation fields
// on the annotation itself (Prometheus: expr, step, titleFormat, textFormat, tagKeys), and the
// foundation SDK writes the interval-variable fields (auto, auto_count, auto_min) on every variable.
const OPEN_DEFINITIONS = ["AnnotationQuery", "VariableModel"];

const require = createRequire(import.meta.url);
const pkg = require("@grafana/schema/package.json");
const pkgDir = path.dirname(require.resolve("@grafana/schema/package.json"));
const typesFile = path.join(pkgDir, "dist/types/raw/dashboard/x/dashboard_types.gen.d.ts");

const schema = createGenerator({
  path: typesFile,
  type: "Dashboard",
  skipTypeCheck: true,
  additionalProperties: false,
  expose: "all",
  topRef: true,
}).createSchema("Dashboard");

for (const name of OPEN_DEFINITIONS) {
  if (!schema.definitions[name]) throw new Error(`definition ${name} not found in ${typesFile}`);
  delete schema.definitions[name].additionalProperties;
}
// The types say only "number"; pin the version this Grafana release writes (42 for 12.3).
schema.definitions.Dashboard.properties.schemaVersion.const = defaultDashboard.schemaVersion;
schema.$comment = `generated from @grafana/schema ${pkg.version} raw/dashboard/x (Dashboard)`;
process.stdout.write(JSON.stringify(schema, null, 2) + "\n");
