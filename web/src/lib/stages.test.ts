import { describe, expect, it } from "vitest";
import { move, stageProblems, type StageDraft } from "./stages";

const stage = (name: string, kind: StageDraft["kind"], probability: number | null = null): StageDraft =>
  ({ key: name, name, kind, probability, rotting_days: null });

describe("stage rules", () => {
  it("accept one of each kind with distinct names", () => {
    expect(stageProblems([stage("New", "open"), stage("Won", "won"), stage("Lost", "lost")])).toEqual([]);
  });
  it("name every problem", () => {
    expect(stageProblems([stage("New", "open", 120), stage("new", "open"), stage(" ", "won")])).toEqual(
      ["stageNameMissing", "stageNameTwice", "stageKindMissing_lost", "probabilityRange"]);
  });
  it("move an item, ignoring moves out of range", () => {
    expect(move(["a", "b", "c"], 0, 2)).toEqual(["b", "c", "a"]);
    expect(move(["a", "b", "c"], 2, 0)).toEqual(["c", "a", "b"]);
    expect(move(["a", "b"], 0, 5)).toEqual(["a", "b"]);
  });
});
