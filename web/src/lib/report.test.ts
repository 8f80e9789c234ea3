import { describe, expect, it } from "vitest";
import { compareRows, flatten, lowerIsBetter } from "./report";

describe("flatten", () => {
  it("spreads per-currency amounts into columns and keeps plain values", () => {
    expect(flatten([
      { key: "2026-01", won_count: 2, amounts: [{ currency: "EUR", won_amount: 100, share: 0.5 }], meta: { x: 1 } },
      { key: "2026-02", won_count: 0, amounts: [{ currency: "USD", won_amount: 7, share: null }], win_rate: null },
    ])).toEqual({
      columns: ["key", "won_count", "won_amount EUR", "share EUR", "won_amount USD", "win_rate"],
      rows: [{ key: "2026-01", won_count: 2, "won_amount EUR": 100, "share EUR": 0.5 },
             { key: "2026-02", won_count: 0, "won_amount USD": 7, win_rate: null }],
    });
  });
});

describe("compareRows", () => {
  it("pairs rows of one owner, and time buckets by their place in the period", () => {
    expect(compareRows([{ key: "u1", won: 2 }, { key: "u2", won: 1 }], [{ key: "u2", won: 3 }, { key: "u3", won: 4 }], "key", null)).toEqual([
      { now: { key: "u1", won: 2 }, before: undefined }, { now: { key: "u2", won: 1 }, before: { key: "u2", won: 3 } },
      { now: { key: "u3" }, before: { key: "u3", won: 4 } }]);
    expect(compareRows([{ key: "2026-12-02", n: 5 }, { key: "2026-12-01", n: 4 }], [{ key: "2026-11-30", n: 2 }, { key: "2026-11-29", n: 1 }], null, "key"))
      .toEqual([{ now: { key: "2026-12-02", n: 5 }, before: { key: "2026-11-30", n: 2 } },
                { now: { key: "2026-12-01", n: 4 }, before: { key: "2026-11-29", n: 1 } }]);
    expect(compareRows([{ source: "web", period: "2026-12", leads: 3 }], [{ source: "web", period: "2026-11", leads: 1 }], "source", "period")[0].before)
      .toEqual({ source: "web", period: "2026-11", leads: 1 });
  });
  it("knows where less is better", () => {
    expect(lowerIsBetter("missed")).toBe(true);
    expect(lowerIsBetter("cost_per_won_deal EUR")).toBe(true);
    expect(lowerIsBetter("won_count")).toBe(false);
  });
});
