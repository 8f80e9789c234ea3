import { describe, expect, it } from "vitest";
import { deleteView, filtersQuery, loadViews, saveView, toCsv } from "./views";

function memory() {
  const data = new Map<string, string>();
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v) };
}

describe("saved views", () => {
  it("are kept per user, replaced by name, sorted", () => {
    const storage = memory();
    saveView("u1", { name: "b", query: "tag=x" }, storage);
    saveView("u1", { name: "a", query: "status=lead" }, storage);
    expect(saveView("u1", { name: "b", query: "tag=y" }, storage)).toEqual([
      { name: "a", query: "status=lead" }, { name: "b", query: "tag=y" }]);
    expect(loadViews("u2", storage)).toEqual([]);
    expect(deleteView("u1", "a", storage)).toEqual([{ name: "b", query: "tag=y" }]);
  });
  it("survive garbage in storage", () => {
    const storage = memory();
    storage.setItem("crm.views.u1", "{not json");
    expect(loadViews("u1", storage)).toEqual([]);
    storage.setItem("crm.views.u1", JSON.stringify([{ name: 1 }, { name: "ok", query: "" }]));
    expect(loadViews("u1", storage)).toEqual([{ name: "ok", query: "" }]);
  });
  it("store filters as a stable query without empty values", () => {
    expect(filtersQuery({ tag: "vip", q: "", status: "lead", source: undefined })).toBe("status=lead&tag=vip");
  });
});

describe("toCsv", () => {
  it("quotes what needs quoting", () => {
    expect(toCsv([["a", 'say "hi"', "x,y"], [null, 1, "line\nbreak"]])).toBe('a,"say ""hi""","x,y"\r\n,1,"line\nbreak"\r\n');
  });
});
