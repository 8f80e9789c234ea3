// npm run gen:api: src/api/schema.d.ts from the gateway's OpenAPI document, read from a
// running stack when CRM_API_URL is set (e.g. http://127.0.0.1:8000), else built from the
// route table by scripts/dump_openapi.py (the repository's .venv).
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, "..");
const out = resolve(web, "build", "openapi.json");
mkdirSync(dirname(out), { recursive: true });
let doc;
if (process.env.CRM_API_URL) {
  const response = await fetch(`${process.env.CRM_API_URL}/api/v1/openapi.json`);
  if (!response.ok) throw new Error(`openapi.json: HTTP ${response.status}`);
  doc = await response.text();
} else {
  const python = process.env.PYTHON || resolve(web, "..", ".venv", "bin", "python");
  doc = execFileSync(python, [resolve(here, "dump_openapi.py")], {
    encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
}
writeFileSync(out, doc);
execFileSync(resolve(web, "node_modules", ".bin", "openapi-typescript"),
  [out, "-o", resolve(web, "src", "api", "schema.d.ts")], { stdio: "inherit" });
