// The rule editor's state <-> the automation API's JSON: conditions (a tree of {"all"|"any": [...]}
// groups and {field, op, value} tests) and actions ({type, ...params}). Actions the editor has no fields for are kept as
// they are (shown, sent back unchanged).
export const OPS = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "not_contains", "empty", "not_empty"] as const;

/** A field's kind as GET /automation/triggers gives it (`types`). */
export type FieldKind = "number" | "text" | "boolean" | "date" | "datetime" | "list" | "object" | "any";
export type FieldKinds = Record<string, string>;

/** A typed value from what was typed, by the field's kind: a text field keeps "52552163" as
 * text, a number field makes it 52552163; lists for in / not_in. A field of unknown kind (a
 * custom field) is guessed from the text, except that contains / not_contains keep text. */
export function parseValue(op: string, text: string, kind?: string): unknown {
  if (op === "empty" || op === "not_empty") return undefined;
  const textual = kind === "text" || kind === "date" || kind === "datetime" || kind === "list"
    || (!kind || kind === "any" || kind === "object") && (op === "contains" || op === "not_contains");
  const one = (raw: string): unknown => {
    const s = raw.trim();
    if (textual) return s;
    if (kind !== "boolean" && /^-?\d+(\.\d+)?$/.test(s)) return Number(s);
    if (kind !== "number" && (s === "true" || s === "false")) return s === "true";
    return s;
  };
  return op === "in" || op === "not_in" ? text.split(",").map(one).filter((v) => v !== "") : one(text);
}

/** Each field path's kind over every trigger (a field is the same kind wherever it appears):
 * what time triggers, which list no fields of their own, are typed by. */
export function kindsOf(triggers: { types?: Record<string, string> }[] | undefined): FieldKinds {
  return Object.assign({}, ...(triggers ?? []).map((t) => t.types ?? {}));
}

export function showValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(String).join(", ");
  return value === undefined || value === null ? "" : String(value);
}

// --- the condition tree: groups (all / any) of tests and groups, nested ------------------
export type Match = "all" | "any";
export type TestNode = { kind: "test"; id: string; field: string; op: string; value: string };
export type GroupNode = { kind: "group"; id: string; match: Match; children: CondNode[] };
export type CondNode = TestNode | GroupNode;
/** Groups deep, the root's included (the API's MAX_NESTING). */
export const MAX_GROUPS = 5;

let lastId = 0;
const nextId = () => `c${++lastId}`;
export const blankTest = (): TestNode => ({ kind: "test", id: nextId(), field: "", op: "eq", value: "" });
export const blankGroup = (match: Match = "any"): GroupNode => ({ kind: "group", id: nextId(), match, children: [blankTest()] });

/** The editor's tree from the API's conditions: always a group at the root. */
export function treeOf(conditions: unknown): GroupNode {
  const node = nodeOf(conditions);
  if (!node) return { kind: "group", id: nextId(), match: "all", children: [] };
  return node.kind === "group" ? node : { kind: "group", id: nextId(), match: "all", children: [node] };
}

function nodeOf(c: unknown): CondNode | null {
  if (!c || typeof c !== "object") return null;
  const o = c as Record<string, unknown>;
  for (const match of ["all", "any"] as Match[]) {
    if (Array.isArray(o[match])) {
      return { kind: "group", id: nextId(), match, children: (o[match] as unknown[]).map(nodeOf).filter((n): n is CondNode => !!n) };
    }
  }
  if (typeof o.field !== "string") return null;
  return { kind: "test", id: nextId(), field: o.field, op: typeof o.op === "string" ? o.op : "eq", value: showValue(o.value) };
}

/** The API's conditions from the tree (tests without a field and groups left empty are
 * dropped; null when nothing is left) and, for each node sent, its path there
 * (`all.1.any.0`): where the API's errors and the run log's reasons point. */
export function toApi(root: GroupNode, kinds: FieldKinds = {}): { conditions: Record<string, unknown> | null; paths: Record<string, string> } {
  const paths: Record<string, string> = {};
  const walk = (node: CondNode, path: string): Record<string, unknown> | null => {
    if (node.kind === "test") {
      if (!node.field.trim()) return null;
      const value = parseValue(node.op, node.value, kinds[node.field.trim()]);
      paths[node.id] = path;
      return { field: node.field.trim(), op: node.op, ...(value === undefined ? {} : { value }) };
    }
    const items: Record<string, unknown>[] = [];
    for (const child of node.children) {
      const item = walk(child, `${path ? `${path}.` : ""}${node.match}.${items.length}`);
      if (item) items.push(item);
    }
    if (!items.length) return null;
    paths[node.id] = path;
    return { [node.match]: items };
  };
  return { conditions: walk(root, ""), paths };
}

type Path = number[];  // child indexes from the root

function edit(root: GroupNode, path: Path, change: (node: CondNode) => CondNode | null): GroupNode {
  const go = (node: CondNode, rest: Path): CondNode | null => {
    if (!rest.length) return change(node);
    if (node.kind !== "group") return node;
    const [i, ...tail] = rest;
    const children = node.children.flatMap((c, j) => {
      if (j !== i) return [c];
      const next = go(c, tail);
      return next ? [next] : [];
    });
    return { ...node, children };
  };
  return (go(root, path) as GroupNode | null) ?? { ...root, children: [] };
}

export function nodeAt(root: GroupNode, path: Path): CondNode | null {
  let node: CondNode = root;
  for (const i of path) {
    if (node.kind !== "group" || !node.children[i]) return null;
    node = node.children[i];
  }
  return node;
}

/** Groups deep at `path` (the root: 1). A group there may hold another while this is below MAX_GROUPS. */
export const groupDepth = (path: Path) => path.length + 1;
export const canNest = (path: Path) => groupDepth(path) < MAX_GROUPS;

export const updateTest = (root: GroupNode, path: Path, patch: Partial<Omit<TestNode, "kind" | "id">>) =>
  edit(root, path, (n) => (n.kind === "test" ? { ...n, ...patch } : n));
export const setMatch = (root: GroupNode, path: Path, match: Match) =>
  edit(root, path, (n) => (n.kind === "group" ? { ...n, match } : n));
export const addTest = (root: GroupNode, path: Path) =>
  edit(root, path, (n) => (n.kind === "group" ? { ...n, children: [...n.children, blankTest()] } : n));
export const addGroup = (root: GroupNode, path: Path, match: Match = "any") =>
  canNest(path) ? edit(root, path, (n) => (n.kind === "group" ? { ...n, children: [...n.children, blankGroup(match)] } : n)) : root;
/** Removes the node (the root is emptied, not removed). */
export const removeNode = (root: GroupNode, path: Path) =>
  path.length ? edit(root, path, () => null) : { ...root, children: [] };
/** Moves a node up (-1) or down (+1) among its siblings. */
export function moveNode(root: GroupNode, path: Path, delta: -1 | 1): GroupNode {
  if (!path.length) return root;
  const parent = path.slice(0, -1), i = path[path.length - 1], j = i + delta;
  return edit(root, parent, (n) => {
    if (n.kind !== "group" || j < 0 || j >= n.children.length) return n;
    const children = [...n.children];
    [children[i], children[j]] = [children[j], children[i]];
    return { ...n, children };
  });
}

/** A condition's place as people count it: `all.1.any.0` -> `#2.1`. */
export function placeOf(apiPath: string): string {
  const indexes = [...apiPath.matchAll(/(?:all|any)\.(\d+)/g)].map((m) => Number(m[1]) + 1);
  return indexes.length ? `#${indexes.join(".")}` : "#";
}

/** A run's reason with the condition paths it names (`all.1.any.0: ...`) as places (`#2.1: ...`). */
export function readableReason(reason: string): string {
  return reason.replace(/\b(?:all|any)\.\d+(?:\.(?:all|any)\.\d+)*(?=: )/g, (path) => placeOf(path));
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
  with: (name: string, value: unknown) => ActionRow; body: (kinds?: FieldKinds) => Record<string, unknown>;
};

function row(type: string, values: Record<string, unknown>, raw?: Record<string, unknown>): ActionRow {
  return {
    type, params: PARAMS[type] ?? [], values, raw,
    with: (name, value) => row(type, { ...values, [name]: value }, raw),
    body: (kinds = {}) => raw ?? { type, ...Object.fromEntries(Object.entries(values)
      .filter(([, v]) => v !== undefined && v !== "")
      .map(([k, v]) => [k, type === "set_field" && k === "value" ? parseValue("eq", String(v), setFieldKind(values, kinds)) : v])) },
  };
}

/** The kind of the field a set_field action writes: the named record's, else the deal's, else the contact's. */
function setFieldKind(values: Record<string, unknown>, kinds: FieldKinds): string | undefined {
  const field = String(values.field ?? "").trim();
  const records = values.record ? [String(values.record)] : ["deal", "contact"];
  return records.map((r) => kinds[`${r}.${field}`]).find(Boolean);
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
