// npm run size (part of npm run build): the JavaScript a browser downloads for the first
// screen (the entry, its static imports, and the Today page it lands on), gzipped, from
// Vite's manifest. Fails above the budget (issue 20: 300 KB).
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET_KB = 300;
const dist = resolve(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const manifest = JSON.parse(readFileSync(resolve(dist, ".vite", "manifest.json"), "utf8"));
const files = new Set();
const visit = (key) => {
  const chunk = manifest[key];
  if (!chunk || files.has(chunk.file)) return;
  files.add(chunk.file);
  for (const imported of chunk.imports ?? []) visit(imported);
};
visit("index.html");
// the page the console lands on (a chunk of its own, or shared with pages importing from it)
visit(Object.keys(manifest).find((key) => key === "src/pages/Today.tsx" || manifest[key].name === "Today"));
let total = 0;
for (const file of [...files].sort()) {
  const size = gzipSync(readFileSync(resolve(dist, file)), { level: 9 }).length;
  total += size;
  console.log(`  ${(size / 1024).toFixed(1).padStart(7)} KB  ${file}`);
}
console.log(`first-load JS (gzip): ${(total / 1024).toFixed(1)} KB (budget ${BUDGET_KB} KB)`);
if (total > BUDGET_KB * 1024) process.exit(1);
