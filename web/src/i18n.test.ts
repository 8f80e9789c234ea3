// Every text the console shows exists in every language (a missing key shows English).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import en from "./locales/en";
import es from "./locales/es";
import he from "./locales/he";
import it_ from "./locales/it";
import ru from "./locales/ru";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.tsx?$/.test(name) && !name.includes(".test.") ? [path] : [];
  });
}

describe("translations", () => {
  it("have the same keys in every language, none empty", () => {
    for (const texts of [it_, es, ru, he]) {
      expect(Object.keys(texts).sort()).toEqual(Object.keys(en).sort());
      expect(Object.values(texts).filter((text) => !String(text).trim())).toEqual([]);
    }
  });
  it("cover every literal key the code uses", () => {
    const used = new Set<string>();
    for (const file of sources(__dirname)) {
      for (const match of readFileSync(file, "utf8").matchAll(/\bt\("([A-Za-z_]+)"/g)) used.add(match[1]);
    }
    expect(used.size).toBeGreaterThan(50);
    expect([...used].filter((key) => !(key in en))).toEqual([]);
  });
});
