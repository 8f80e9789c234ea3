// Report rows (nested per-currency amounts and all) as one flat table; pure, unit-tested.
type Cell = string | number | boolean | null;

/** Columns in first-seen order; a list of per-currency objects becomes one column per
 * field and currency ("won_amount EUR"); other nested values are left out. */
export function flatten(rows: Record<string, unknown>[]) {
  const columns: string[] = [];
  const add = (name: string) => { if (!columns.includes(name)) columns.push(name); };
  const out = rows.map((row) => {
    const flat: Record<string, Cell> = {};
    for (const [key, value] of Object.entries(row)) {
      if (value === null || ["string", "number", "boolean"].includes(typeof value)) {
        flat[key] = value as Cell; add(key);
      } else if (Array.isArray(value)) {
        for (const item of value) {
          if (!item || typeof item !== "object" || !("currency" in item)) continue;
          for (const [field, v] of Object.entries(item)) {
            if (field === "currency" || typeof v !== "number") continue;
            const name = `${field} ${(item as { currency: string }).currency}`;
            flat[name] = v; add(name);
          }
        }
      }
    }
    return flat;
  });
  return { columns, rows: out };
}

type Row = Record<string, Cell>;

/** Each row of a period's report with the same row of the previous period's: rows of one
 * `group` (a stage, an owner, a source...) pair up, and time buckets (`bucket`: a month, a
 * day, a week) pair by their place in the period (the first day with the first day); a
 * row only the previous period had comes last, empty now. */
export function compareRows(now: Row[], before: Row[], group: string | null, bucket: string | null) {
  const keyed = (rows: Row[]) => {
    const seen = new Map<string, number>();
    const order = bucket ? [...rows].sort((a, b) => String(a[bucket] ?? "").localeCompare(String(b[bucket] ?? ""))) : rows;
    const keys = new Map<Row, string>();
    for (const row of order) {
      const g = group ? String(row[group] ?? "") : "";
      const n = seen.get(g) ?? 0;
      seen.set(g, n + 1);
      keys.set(row, bucket ? `${g}|${n}` : g);
    }
    return rows.map((row) => ({ row, key: keys.get(row)! }));
  };
  const earlier = new Map(keyed(before).map(({ row, key }) => [key, row]));
  const mine = keyed(now);
  const shown = new Set(mine.map((r) => r.key));
  return [...mine.map(({ row, key }) => ({ now: row, before: earlier.get(key) })),
          ...keyed(before).filter(({ key }) => !shown.has(key))
            .map(({ row }) => ({ now: (group ? { [group]: row[group] } : {}) as Row, before: row as Row | undefined }))];
}

/** Columns where less is better (a rise shown red). */
export const lowerIsBetter = (column: string) => /missed|lost|overdue|cancel|cycle|cost/.test(column);
