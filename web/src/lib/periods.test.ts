import { describe, expect, it } from "vitest";
import { behindPlan, forecastDealsLink, lastDays, monthBounds, monthElapsed, monthSeries, pairByKey, periodOf,
         previousDays, salesTotals, shiftMonth, thisMonth, trend, withPrevious, wonDealsLink } from "./periods";

describe("periods", () => {
  it("cover the last days to the end of today in the user's zone, and the period before", () => {
    expect(lastDays("2026-12-05", 7, "Europe/Rome")).toEqual({
      from: "2026-11-28T23:00:00.000Z", to: "2026-12-05T23:00:00.000Z",
      previousFrom: "2026-11-21T23:00:00.000Z", previousTo: "2026-11-28T23:00:00.000Z" });
  });
  it("compare with the previous period", () => {
    expect(trend(15, 10)?.ratio).toBeCloseTo(0.5);
    expect(trend(5, 10)?.ratio).toBeCloseTo(-0.5);
    expect(trend(5, 0)?.ratio).toBeNull();
    expect(trend(undefined, 3)).toBeNull();
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

describe("previous period", () => {
  it("is the month before for this month, in the user's zone", () => {
    expect(thisMonth("2026-03-15", "Europe/Rome")).toEqual({
      from: "2026-02-28T23:00:00.000Z", to: "2026-03-31T22:00:00.000Z",
      previousFrom: "2026-01-31T23:00:00.000Z", previousTo: "2026-02-28T23:00:00.000Z" });
    expect(periodOf("7", "2026-12-05", "UTC").previousTo).toBe("2026-11-29T00:00:00.000Z");
    expect(periodOf("month", "2026-01-10", "UTC").previousFrom).toBe("2025-12-01T00:00:00.000Z");
  });
  it("is as many days just before for a chosen range", () => {
    expect(previousDays("2026-03-01", "2026-03-31")).toEqual({ fromDay: "2026-01-29", toDay: "2026-02-28" });
    expect(previousDays("2026-12-05", "2026-12-05")).toEqual({ fromDay: "2026-12-04", toDay: "2026-12-04" });
  });
  it("shifts months across years and bounds them in UTC as the sales report does", () => {
    expect(shiftMonth("2026-01", -1)).toBe("2025-12");
    expect(shiftMonth("2026-12", 1)).toBe("2027-01");
    expect(shiftMonth("2026-03", -12)).toBe("2025-03");
    expect(monthBounds("2026-12")).toEqual({ from: "2026-12-01T00:00:00.000Z", to: "2027-01-01T00:00:00.000Z",
                                             fromDay: "2026-12-01", toDay: "2027-01-01" });
  });
  it("says the change and whether it is better", () => {
    expect(trend(12, 10)).toEqual({ diff: 2, ratio: 0.2, better: true });
    expect(trend(12, 10, true)?.better).toBe(false);
    expect(trend(3, 0)).toEqual({ diff: 3, ratio: null, better: true });
    expect(trend(5, 5)?.better).toBeNull();
    expect(trend(5, undefined)).toBeNull();
  });
  it("puts the previous period's value beside each point and row", () => {
    expect(withPrevious([{ d: 1, v: 5 }, { d: 2, v: 6 }], [{ d: 0, v: 4 }], (r) => r.v))
      .toEqual([{ d: 1, v: 5, previous: 4 }, { d: 2, v: 6, previous: 0 }]);
    expect(pairByKey([{ k: "a", v: 1 }], [{ k: "a", v: 2 }, { k: "b", v: 3 }], (r) => r.k)).toEqual([
      { key: "a", now: { k: "a", v: 1 }, before: { k: "a", v: 2 } }, { key: "b", now: undefined, before: { k: "b", v: 3 } }]);
  });
  it("drills to the deals behind a figure", () => {
    expect(wonDealsLink("2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z", "EUR", "u1"))
      .toBe("/deals?status=won&closed_after=2026-11-01T00%3A00%3A00.000Z&closed_before=2026-12-01T00%3A00%3A00.000Z&currency=EUR&owner_id=u1");
    expect(forecastDealsLink("2026-12", "USD", null, "p1"))
      .toBe("/deals?status=open&expected_close_from=2026-12-01&expected_close_to=2027-01-01&currency=USD&pipeline_id=p1");
  });
});
