// The pipeline editor's rules, checked before the API is asked (it checks them again); pure.
export type StageDraft = { key: string; id?: string; name: string; kind: "open" | "won" | "lost";
                           probability: number | null; rotting_days: number | null };

/** Problems of a stage list: empty or duplicate names, not one each of open / won / lost. */
export function stageProblems(stages: StageDraft[]) {
  const problems: string[] = [];
  if (stages.some((s) => !s.name.trim())) problems.push("stageNameMissing");
  const names = stages.map((s) => s.name.trim().toLowerCase()).filter(Boolean);
  if (new Set(names).size !== names.length) problems.push("stageNameTwice");
  for (const kind of ["open", "won", "lost"] as const) {
    if (!stages.some((s) => s.kind === kind)) problems.push(`stageKindMissing_${kind}`);
  }
  if (stages.some((s) => s.probability != null && (s.probability < 0 || s.probability > 100))) problems.push("probabilityRange");
  return problems;
}

/** Move the item at `from` to `to`. */
export function move<T>(items: T[], from: number, to: number) {
  if (from === to || from < 0 || to < 0 || from >= items.length || to >= items.length) return items;
  const next = [...items];
  const [item] = next.splice(from, 1);
  next.splice(to, 0, item);
  return next;
}
