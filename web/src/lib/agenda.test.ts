import { describe, expect, it } from "vitest";
import { buildAgenda, needsNextStep } from "./agenda";

const task = (id: string, due: string, extra = {}) => ({ id, title: id, due_at: due, status: "open", kind: "todo", ...extra });

describe("buildAgenda", () => {
  it("orders tasks by due time and drops finished or hidden ones", () => {
    const view = buildAgenda({
      overdue: [task("b", "2026-01-02T09:00:00Z"), task("a", "2026-01-01T09:00:00Z"), task("x", "2026-01-01T08:00:00Z", { status: "done" })],
      today: [task("d", "2026-01-03T15:00:00Z"), task("c", "2026-01-03T09:00:00Z")],
      deals_without_next_step: [{ id: "deal1", title: "Big" }],
    }, [], new Set(["d"]));
    expect(view.overdue.map((t) => t.id)).toEqual(["a", "b"]);
    expect(view.today.map((t) => t.id)).toEqual(["c"]);
    expect(view.dealsWithoutNextStep?.map((d) => d.id)).toEqual(["deal1"]);
    expect(view.count).toBe(4);
  });
  it("keeps one missed call per number, the latest, and only those not called back", () => {
    const view = buildAgenda({ overdue: [], today: [], deals_without_next_step: [] }, [
      { id: "1", number: "+39", missed: true, called_back: false, started_at: "2026-01-01T09:00:00Z" },
      { id: "2", number: "+39", missed: true, called_back: false, started_at: "2026-01-01T10:00:00Z" },
      { id: "3", number: "+44", missed: true, called_back: true, started_at: "2026-01-01T11:00:00Z" },
      { id: "4", number: "+1", missed: false, started_at: "2026-01-01T12:00:00Z" },
      { id: "5", number: "+7", missed: true, called_back: false, started_at: "2026-01-01T08:00:00Z" },
    ]);
    expect(view.missedCalls.map((c) => c.id)).toEqual(["2", "5"]);
  });
  it("says the deals part is missing when the deals service did not answer", () => {
    const view = buildAgenda({ overdue: [], today: [], deals_without_next_step: null, deals_unavailable: true }, undefined);
    expect(view.dealsWithoutNextStep).toBeNull();
    expect(view.count).toBe(0);
  });
  it("asks a next step for call tasks only", () => {
    expect(needsNextStep({ kind: "call" })).toBe(true);
    expect(needsNextStep({ kind: "todo" })).toBe(false);
  });
});
