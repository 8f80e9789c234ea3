import { describe, expect, it } from "vitest";
import { actionOf, blankAction, conditionsOf, rowsOf } from "./rules";

describe("rule rows", () => {
  it("turn typed conditions into the API's JSON and back", () => {
    const json = conditionsOf("any", [{ field: "deal.amount", op: "gte", value: "1000" },
      { field: "contact.tags", op: "in", value: "vip, gold" }, { field: "contact.email", op: "empty", value: "x" },
      { field: "", op: "eq", value: "ignored" }]);
    expect(json).toEqual({ any: [{ field: "deal.amount", op: "gte", value: 1000 },
      { field: "contact.tags", op: "in", value: ["vip", "gold"] }, { field: "contact.email", op: "empty" }] });
    expect(rowsOf(json).rows[1]).toEqual({ field: "contact.tags", op: "in", value: "vip, gold" });
    expect(conditionsOf("all", [])).toBeNull();
    expect(rowsOf({ field: "a", op: "eq", value: true })).toEqual({ match: "all", rows: [{ field: "a", op: "eq", value: "true" }] });
  });
  it("keep actions the editor has no fields for as they are", () => {
    const raw = { type: "send_message", channel: "email", template_id: "t1" };
    expect(actionOf(raw).body()).toEqual(raw);
    expect(blankAction("add_tag").with("tag", "vip").body()).toEqual({ type: "add_tag", tag: "vip" });
    expect(actionOf({ type: "set_field", field: "custom.score", value: 5 }).with("value", "7").body())
      .toEqual({ type: "set_field", field: "custom.score", value: 7 });
  });
});
