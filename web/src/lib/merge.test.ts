import { describe, expect, it } from "vitest";
import { conflicts, defaultChoices, keepBody } from "./merge";

const survivor = { id: "s", first_name: "Ann", last_name: "Work", position: "", source: "web" };
const twin = { id: "t", first_name: "Anna", last_name: "Work", position: "CTO", source: null };

describe("side-by-side merge", () => {
  it("lists only the fields that differ", () => {
    expect(conflicts([survivor, twin])).toEqual(["first_name", "position", "source"]);
  });
  it("starts from the server's rule: the survivor's value, a blank one filled from a source", () => {
    const rule = defaultChoices(survivor, [twin]);
    expect([rule.first_name, rule.position, rule.source]).toEqual(["s", "t", "s"]);
  });
  it("sends only the picks the rule would not make", () => {
    expect(keepBody(survivor, [twin], { first_name: "t", position: "t", source: "t" })).toEqual({ first_name: "t", source: "t" });
    expect(keepBody(survivor, [twin], { position: "s" })).toEqual({ position: "s" });
    expect(keepBody(survivor, [twin], {})).toEqual({});
  });
});
