// Saved views of the contacts list: named filter sets per user. The API has no place for
// them, so they live in this browser's localStorage (key crm.views.<user id>).
import { zonedToUtc } from "./format";

export type SavedView = { name: string; query: string };

const key = (userId: string) => `crm.views.${userId}`;

/** A list kept as JSON in the browser, only its well-formed entries ([] when unreadable). */
export function readStoredList<T>(storageKey: string, valid: (item: T) => boolean, storage: Pick<Storage, "getItem"> = localStorage): T[] {
  try {
    const items = JSON.parse(storage.getItem(storageKey) ?? "[]");
    return Array.isArray(items) ? items.filter((item) => item && valid(item)) : [];
  } catch {
    return [];
  }
}

export function loadViews(userId: string, storage: Pick<Storage, "getItem"> = localStorage): SavedView[] {
  return readStoredList<SavedView>(key(userId), (v) => typeof v.name === "string" && typeof v.query === "string", storage);
}

/** Add or replace (same name) a view; returns the new list, sorted by name. */
export function saveView(userId: string, view: SavedView, storage: Pick<Storage, "getItem" | "setItem"> = localStorage) {
  const views = [...loadViews(userId, storage).filter((v) => v.name !== view.name), view]
    .sort((a, b) => a.name.localeCompare(b.name));
  storage.setItem(key(userId), JSON.stringify(views));
  return views;
}

export function deleteView(userId: string, name: string, storage: Pick<Storage, "getItem" | "setItem"> = localStorage) {
  const views = loadViews(userId, storage).filter((v) => v.name !== name);
  storage.setItem(key(userId), JSON.stringify(views));
  return views;
}

/** The list's filters in a URL query, without empty values, in a stable order. */
export function filtersQuery(filters: Record<string, string | undefined | null>) {
  const params = new URLSearchParams();
  for (const name of Object.keys(filters).sort()) {
    const value = filters[name];
    if (value) params.set(name, value);
  }
  return params.toString();
}

/** Rows as CSV (RFC 4180 quoting). */
export function toCsv(rows: (string | number | null | undefined)[][]) {
  const cell = (value: string | number | null | undefined) => {
    const text = value == null ? "" : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return rows.map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
}

/** The contacts list's URL filters (a view's query) as the API's list parameters: days in
 * the user's zone become instants. */
export function contactsQuery(filters: Partial<Record<string, string>>, timeZone: string) {
  const dayStart = (day?: string) => day ? zonedToUtc(day, 0, 0, timeZone).toISOString() : undefined;
  return {
    q: filters.q || undefined, tag: filters.tag || undefined, owner_id: filters.owner_id || undefined,
    status: filters.status as "lead" | undefined, source: filters.source || undefined,
    not_contacted_since: dayStart(filters.not_contacted_since), created_after: dayStart(filters.created_from),
    created_before: filters.created_to ? zonedToUtc(filters.created_to, 23, 59, timeZone).toISOString() : undefined,
    sort: (filters.sort || undefined) as "name" | undefined,
  };
}
