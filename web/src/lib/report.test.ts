import { describe, expect, it } from "vitest";
import { flatten } from "./report";

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
