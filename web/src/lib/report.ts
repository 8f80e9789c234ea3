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
