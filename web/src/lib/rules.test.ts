import { describe, expect, it } from "vitest";
import { actionOf, addGroup, addTest, blankAction, canNest, kindsOf, MAX_GROUPS, moveNode, nodeAt, placeOf, readableReason, removeNode,
         parseValue, setMatch, toApi, treeOf, updateTest, type GroupNode } from "./rules";

const strip = (root: GroupNode) => toApi(root).conditions;

describe("typed values", () => {
  it("keeps digits as text for a text field and makes numbers only where the field is one", () => {
    const kinds = kindsOf([{ types: { "deal.title": "text", "deal.amount": "number" } }, { types: { "deal.rotting": "boolean" } }]);
    const tree = treeOf({ all: [{ field: "deal.title", op: "contains", value: "52552163" },
      { field: "deal.title", op: "eq", value: "1e3" }, { field: "deal.amount", op: "gte", value: 52552163 },
      { field: "deal.rotting", op: "eq", value: true }, { field: "deal.title", op: "in", value: ["12", "ab"] }] });
    expect(toApi(tree, kinds).conditions).toEqual({ all: [{ field: "deal.title", op: "contains", value: "52552163" },
      { field: "deal.title", op: "eq", value: "1e3" }, { field: "deal.amount", op: "gte", value: 52552163 },
      { field: "deal.rotting", op: "eq", value: true }, { field: "deal.title", op: "in", value: ["12", "ab"] }] });
    // a field of unknown kind (a custom field) is guessed, but contains keeps text
    expect(parseValue("eq", "42", undefined)).toBe(42);
    expect(parseValue("contains", "42", undefined)).toBe("42");
    expect(parseValue("eq", "true", "text")).toBe("true");
    expect(parseValue("gt", "2026-01-01", "datetime")).toBe("2026-01-01");
    // set_field: the written field's kind decides too
    const title = blankAction("set_field").with("field", "title").with("value", "0042");
    expect(title.body({ "deal.title": "text" })).toEqual({ type: "set_field", field: "title", value: "0042" });
    const amount = blankAction("set_field").with("field", "amount").with("value", "42");
    expect(amount.body({ "deal.amount": "number" })).toEqual({ type: "set_field", field: "amount", value: 42 });
  });
});

describe("the condition tree", () => {
  it("turns typed tests into the API's JSON and back, nested groups included", () => {
    const api = { all: [{ field: "deal.amount", op: "gte", value: 1000 },
      { any: [{ field: "contact.tags", op: "in", value: ["vip", "gold"] }, { all: [{ field: "contact.email", op: "empty" }] }] }] };
    const tree = treeOf(api);
    expect(tree.match).toBe("all");
    expect(nodeAt(tree, [1, 0])).toMatchObject({ kind: "test", field: "contact.tags", op: "in", value: "vip, gold" });
    expect(strip(tree)).toEqual(api);
    expect(toApi(tree).paths[nodeAt(tree, [1, 1, 0])!.id]).toBe("all.1.any.1.all.0");
    // a lone test becomes a one-test group; nothing stays nothing
    expect(strip(treeOf({ field: "a", op: "eq", value: true }))).toEqual({ all: [{ field: "a", op: "eq", value: true }] });
    expect(treeOf(null).children).toEqual([]);
    expect(strip(treeOf(null))).toBeNull();
  });

  it("builds a rule with a nested OR group and drops what is left blank", () => {
    let tree = treeOf(null);
    tree = addTest(tree, []);
    tree = updateTest(tree, [0], { field: "deal.amount", op: "gt", value: "100" });
    tree = addGroup(tree, [], "any");  // comes with one blank test
    tree = updateTest(tree, [1, 0], { field: "deal.source", op: "eq", value: "web" });
    tree = addTest(tree, [1]);
    tree = updateTest(tree, [1, 1], { field: "deal.tags", op: "contains", value: "vip" });
    tree = addTest(tree, [1]);  // blank: not sent
    expect(strip(tree)).toEqual({ all: [{ field: "deal.amount", op: "gt", value: 100 },
      { any: [{ field: "deal.source", op: "eq", value: "web" }, { field: "deal.tags", op: "contains", value: "vip" }] }] });
    tree = setMatch(tree, [1], "all");
    expect((strip(tree)!.all as Record<string, unknown>[])[1]).toHaveProperty("all");
    tree = moveNode(tree, [1], -1);
    expect(nodeAt(tree, [0])!.kind).toBe("group");
    expect(moveNode(tree, [0], -1)).toEqual(tree);  // the first one stays first
    tree = removeNode(tree, [0]);
    expect(strip(tree)).toEqual({ all: [{ field: "deal.amount", op: "gt", value: 100 }] });
    expect(removeNode(tree, []).children).toEqual([]);
    // a group of blank tests alone is nothing; the paths skip the dropped ones
    const blanks = addTest(addGroup(treeOf(null), []), []);
    expect(strip(blanks)).toBeNull();
  });

  it("nests no deeper than the API allows", () => {
    let tree = treeOf(null);
    let path: number[] = [];
    while (canNest(path)) { tree = addGroup(tree, path); path = [...path, (nodeAt(tree, path) as GroupNode).children.length - 1]; }
    expect(path.length + 1).toBe(MAX_GROUPS);
    expect(addGroup(tree, path)).toBe(tree);
  });

  it("shows the run log's condition paths as places", () => {
    expect(placeOf("all.1.any.0")).toBe("#2.1");
    expect(placeOf("")).toBe("#");
    expect(readableReason("all.1: none of: all.1.any.0: deal.amount gt 900 failed (is 500); all.1.any.1.all.1: x eq 'y' failed (is 'z')"))
      .toBe("#2: none of: #2.1: deal.amount gt 900 failed (is 500); #2.2.2: x eq 'y' failed (is 'z')");
    expect(readableReason("deal.amount gte 1000 failed (is 500)")).toBe("deal.amount gte 1000 failed (is 500)");
  });
});

describe("rule actions", () => {
  it("keep actions the editor has no fields for as they are", () => {
    const raw = { type: "send_message", channel: "email", template_id: "t1" };
    expect(actionOf(raw).body()).toEqual(raw);
    expect(blankAction("add_tag").with("tag", "vip").body()).toEqual({ type: "add_tag", tag: "vip" });
    expect(actionOf({ type: "set_field", field: "custom.score", value: 5 }).with("value", "7").body())
      .toEqual({ type: "set_field", field: "custom.score", value: 7 });
  });
});
