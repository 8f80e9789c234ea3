import { describe, expect, it } from "vitest";
import { staleKeys } from "./stream";

describe("staleKeys", () => {
  it("refreshes what an event changes", () => {
    expect(staleKeys("resync")).toEqual([[]]);
    expect(staleKeys("task_completed")).toEqual([["contact"], ["tasks"]]);
    expect(staleKeys("deal_won")).toEqual([["deals"], ["tasks", "agenda"]]);
    expect(staleKeys("call_missed")).toEqual([["contact"], ["calls"]]);
    expect(staleKeys("company_updated")).toEqual([["companies"]]);
    expect(staleKeys("import_finished")).toEqual([["imports"], ["contacts"]]);
    expect(staleKeys("something_else")).toEqual([]);
  });
});
