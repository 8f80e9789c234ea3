// The user's own dashboard tiles: saved list views shown as counts that open the list
// with that filter. Ordered as the user arranges them; kept in this browser like the
// views they come from (key crm.tiles.<user id>).
import { contactsQuery, readStoredList } from "./views";

export type Tile = { id: string; name: string; list: "contacts" | "myday"; query: string };

/** The "my day" tile's marker (its name is translated where shown). */
export const MY_DAY = "myday";

const key = (userId: string) => `crm.tiles.${userId}`;

export function loadTiles(userId: string, storage: Pick<Storage, "getItem"> = localStorage): Tile[] {
  return readStoredList<Tile>(key(userId), (t) => typeof t.id === "string" && typeof t.query === "string", storage);
}

export function storeTiles(userId: string, tiles: Tile[], storage: Pick<Storage, "setItem"> = localStorage) {
  storage.setItem(key(userId), JSON.stringify(tiles));
  return tiles;
}

/** A saved view as a new tile at the end (a view already shown is not added twice). */
export function addTile(tiles: Tile[], view: { name: string; query: string }): Tile[] {
  if (tiles.some((t) => t.list === "contacts" && t.query === view.query)) return tiles;
  return [...tiles, { id: `${Date.now().toString(36)}${tiles.length}`, name: view.name, list: "contacts", query: view.query }];
}

/** The "my day" tile (the Today page's counts) at the end, once. */
export function addMyDay(tiles: Tile[]): Tile[] {
  if (tiles.some((t) => t.list === "myday")) return tiles;
  return [...tiles, { id: `${Date.now().toString(36)}${tiles.length}`, name: MY_DAY, list: "myday", query: "" }];
}

/** The tile at `index` moved by `by` places (clamped to the ends). */
export function moveTile(tiles: Tile[], index: number, by: number): Tile[] {
  const to = Math.max(0, Math.min(tiles.length - 1, index + by));
  if (to === index || index < 0 || index >= tiles.length) return tiles;
  const out = [...tiles];
  const [tile] = out.splice(index, 1);
  out.splice(to, 0, tile);
  return out;
}

/** Where a tile's number drills down to: its list with its filters. */
export const tileLink = (tile: Tile) => tile.list === "myday" ? "/today" : `/${tile.list}${tile.query ? `?${tile.query}` : ""}`;

/** The count request of a tile: the list's own filters, one row, its total. */
export function tileCountQuery(tile: Tile, timeZone: string) {
  const filters = contactsQuery(Object.fromEntries(new URLSearchParams(tile.query)), timeZone);
  return { ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v)), limit: 1, include_total: true };
}
