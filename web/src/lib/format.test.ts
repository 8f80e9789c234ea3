import { describe, expect, it } from "vitest";
import { addDays, calendarDays, dateTime, dayKey, duration, money, moveToDay, number, totalsByCurrency, zonedToUtc } from "./format";

const nbsp = (text: string) => text.replace(/[\u00a0\u202f]/g, " ");

describe("money", () => {
  it("formats integer minor units per language", () => {
    expect(money(150000, "EUR", "en")).toBe("€1,500.00");
    expect(nbsp(money(1234567, "EUR", "it"))).toBe("12.345,67 €");
    expect(nbsp(money(123456, "RUB", "ru"))).toBe("1 234,56 ₽");
  });
  it("knows currencies without minor units", () => {
    expect(money(1500, "JPY", "en")).toBe("¥1,500");
  });
  it("is empty without an amount or currency, and survives an unknown code", () => {
    expect(money(undefined, "EUR", "en")).toBe("");
    expect(money(100, null, "en")).toBe("");
    expect(money(1234, "E1R", "en")).toBe("12.34 E1R");
  });
});

describe("dates and numbers", () => {
  it("shows an instant in the user's time zone", () => {
    expect(dateTime("2026-03-01T23:30:00Z", "en-GB", "Europe/Rome")).toContain("2 Mar 2026");
    expect(dateTime("2026-03-01T23:30:00Z", "en-GB", "America/New_York")).toContain("1 Mar 2026");
    expect(dateTime("2026-03-01T23:30:00Z", "en-GB", "Not/AZone")).toMatch(/2026/);
  });
  it("formats numbers and durations", () => {
    expect(nbsp(number(1234567.5, "de"))).toBe("1.234.567,5");
    expect(duration(125)).toBe("2:05");
    expect(duration(null)).toBe("");
  });
  it("finds the calendar day of an instant in a zone", () => {
    expect(dayKey("2026-03-01T23:30:00Z", "Europe/Rome")).toBe("2026-03-02");
    expect(dayKey("2026-03-01T23:30:00Z", "UTC")).toBe("2026-03-01");
  });
  it("turns a wall-clock time in a zone into UTC, across daylight saving changes", () => {
    expect(zonedToUtc("2026-01-15", 10, 0, "Europe/Rome").toISOString()).toBe("2026-01-15T09:00:00.000Z");
    expect(zonedToUtc("2026-07-15", 10, 0, "Europe/Rome").toISOString()).toBe("2026-07-15T08:00:00.000Z");
    expect(zonedToUtc("2026-03-29", 12, 0, "Europe/Rome").toISOString()).toBe("2026-03-29T10:00:00.000Z");
  });
  it("moves a due time to another day keeping its time of day", () => {
    // 10:15 in Rome the day before the spring change, moved across it: still 10:15 in Rome
    expect(moveToDay("2026-03-28T09:15:00Z", "2026-03-30", "Europe/Rome")).toBe("2026-03-30T08:15:00.000Z");
    expect(moveToDay(null, "2026-03-30", "UTC")).toBe("2026-03-30T09:00:00.000Z");
  });
});

describe("calendar grid", () => {
  it("gives a Monday-first week", () => {
    expect(calendarDays("2026-12-05", "week")).toEqual(
      ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05", "2026-12-06"]);
  });
  it("gives whole weeks around a month", () => {
    const days = calendarDays("2026-02-10", "month");
    expect(days[0]).toBe("2026-01-26");
    expect(days[days.length - 1]).toBe("2026-03-01");
    expect(days.length % 7).toBe(0);
  });
  it("adds days across months and years", () => {
    expect(addDays("2026-12-31", 1)).toBe("2027-01-01");
    expect(addDays("2024-03-01", -1)).toBe("2024-02-29");
  });
});

describe("board totals", () => {
  it("sums per currency, ignoring deals without an amount", () => {
    expect(totalsByCurrency([
      { amount: 100, currency: "EUR" }, { amount: 250, currency: "USD" }, { amount: 50, currency: "EUR" },
      { amount: null, currency: "EUR" }, { amount: 10, currency: null },
    ])).toEqual([{ currency: "EUR", amount: 150 }, { currency: "USD", amount: 250 }]);
    expect(totalsByCurrency([])).toEqual([]);
  });
});
