// The rule editor's rows <-> the automation API's JSON: conditions ({"all"|"any": [{field, op,
// value}]}) and actions ({type, ...params}). Actions the editor has no fields for are kept as
// they are (shown, sent back unchanged).
export const OPS = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "not_contains", "empty", "not_empty"] as const;
export type ConditionRow = { field: string; op: string; value: string };

/** A typed value from what was typed: numbers, true/false, lists for in / not_in. */
export function parseValue(op: string, text: string): unknown {
  if (op === "empty" || op === "not_empty") return undefined;
  const one = (raw: string): unknown => {
    const s = raw.trim();
    if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
    if (s === "true" || s === "false") return s === "true";
    return s;
  };
  return op === "in" || op === "not_in" ? text.split(",").map(one).filter((v) => v !== "") : one(text);
}

export function showValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(String).join(", ");
  return value === undefined || value === null ? "" : String(value);
}

export function conditionsOf(match: "all" | "any", rows: ConditionRow[]): Record<string, unknown> | null {
  const items = rows.filter((r) => r.field.trim()).map((r) => {
    const value = parseValue(r.op, r.value);
    return { field: r.field.trim(), op: r.op, ...(value === undefined ? {} : { value }) };
  });
  return items.length ? { [match]: items } : null;
}

/** Rows from the API's conditions (one level of all/any; a nested group is kept as a row of JSON). */
export function rowsOf(conditions: Record<string, unknown> | null | undefined): { match: "all" | "any"; rows: ConditionRow[] } {
  if (!conditions) return { match: "all", rows: [] };
  const match = "any" in conditions ? "any" : "all";
  const list = (conditions[match] as Record<string, unknown>[] | undefined) ?? [conditions];
  return {
    match,
    rows: list.filter((c) => typeof c.field === "string")
      .map((c) => ({ field: c.field as string, op: (c.op as string) ?? "eq", value: showValue(c.value) })),
  };
}

type Param = { name: string; kind: "text" | "number" | "stage" };
const PARAMS: Record<string, Param[]> = {
  notify_user: [{ name: "message", kind: "text" }],
  create_task: [{ name: "title", kind: "text" }, { name: "due_in_minutes", kind: "number" }],
  add_tag: [{ name: "tag", kind: "text" }],
  set_field: [{ name: "field", kind: "text" }, { name: "value", kind: "text" }],
  move_deal: [{ name: "stage_id", kind: "stage" }],
  webhook: [{ name: "url", kind: "text" }],
};
export const ACTION_TYPES = Object.keys(PARAMS);

export type ActionRow = {
  type: string; params: Param[]; values: Record<string, unknown>; raw?: Record<string, unknown>;
  with: (name: string, value: unknown) => ActionRow; body: () => Record<string, unknown>;
};

function row(type: string, values: Record<string, unknown>, raw?: Record<string, unknown>): ActionRow {
  return {
    type, params: PARAMS[type] ?? [], values, raw,
    with: (name, value) => row(type, { ...values, [name]: value }, raw),
    body: () => raw ?? { type, ...Object.fromEntries(Object.entries(values)
      .filter(([, v]) => v !== undefined && v !== "")
      .map(([k, v]) => [k, type === "set_field" && k === "value" ? parseValue("eq", String(v)) : v])) },
  };
}

export function blankAction(type: string): ActionRow {
  return row(type, {});
}

export function actionOf(action: Record<string, unknown>): ActionRow {
  const type = String(action.type ?? "");
  const params = PARAMS[type];
  const known = params && Object.keys(action).every((k) => k === "type" || params.some((p) => p.name === k));
  if (!known) return row(type, {}, action);
  const { type: _type, ...values } = action;
  return row(type, type === "set_field" ? { ...values, value: showValue(values.value) } : values);
}
