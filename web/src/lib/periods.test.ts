import { describe, expect, it } from "vitest";
import { behindPlan, change, lastDays, monthElapsed, monthSeries, salesTotals } from "./periods";

describe("periods", () => {
  it("cover the last days to the end of today in the user's zone, and the period before", () => {
    expect(lastDays("2026-12-05", 7, "Europe/Rome")).toEqual({
      from: "2026-11-28T23:00:00.000Z", to: "2026-12-05T23:00:00.000Z",
      previousFrom: "2026-11-21T23:00:00.000Z", previousTo: "2026-11-28T23:00:00.000Z" });
  });
  it("compare with the previous period", () => {
    expect(change(15, 10)).toBeCloseTo(0.5);
    expect(change(5, 10)).toBeCloseTo(-0.5);
    expect(change(5, 0)).toBeNull();
    expect(change(undefined, 3)).toBeNull();
  });
  it("sum a sales report per currency, biggest first, with the win rate", () => {
    const totals = salesTotals([
      { key: "u1", won_count: 2, lost_count: 1, amounts: [{ currency: "EUR", won_amount: 100 }, { currency: "USD", won_amount: 500 }] },
      { key: "u2", won_count: 1, lost_count: 0, amounts: [{ currency: "EUR", won_amount: 50 }] },
    ]);
    expect(totals).toEqual({ won: 3, lost: 1, winRate: 0.75, amounts: [{ currency: "USD", amount: 500 }, { currency: "EUR", amount: 150 }] });
    expect(salesTotals([]).winRate).toBeNull();
  });
  it("turn months into chart points of one currency", () => {
    expect(monthSeries([{ key: "2026-02", won_count: 1, amounts: [{ currency: "EUR", won_amount: 7 }] },
                        { key: "2026-01", won_count: 0, amounts: [] }], "EUR")).toEqual([
      { month: "2026-01", amount: 0, won: 0 }, { month: "2026-02", amount: 7, won: 1 }]);
  });
  it("flag who is behind the plan pro rata, not in the first days", () => {
    expect(monthElapsed("2026-12-15")).toBeCloseTo(15 / 31);
    expect(monthElapsed("2026-02-28")).toBe(1);
    expect(behindPlan(30, monthElapsed("2026-12-20"))).toBe(true);   // 30% done, 65% gone
    expect(behindPlan(60, monthElapsed("2026-12-20"))).toBe(false);  // over 80% of 65%
    expect(behindPlan(0, monthElapsed("2026-12-03"))).toBe(false);   // too early to say
    expect(behindPlan(null, 0.9)).toBe(false);
  });
});
