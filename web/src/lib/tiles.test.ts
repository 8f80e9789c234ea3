import { describe, expect, it } from "vitest";
import { addMyDay, addTile, loadTiles, moveTile, storeTiles, tileCountQuery, tileLink, type Tile } from "./tiles";

const memory = () => { const data: Record<string, string> = {}; return { getItem: (k: string) => data[k] ?? null, setItem: (k: string, v: string) => { data[k] = v; } }; };

describe("dashboard tiles", () => {
  it("come from saved views, once each, and are kept per user", () => {
    const storage = memory();
    let tiles = addTile([], { name: "Fair", query: "source=fair&status=prospect" });
    tiles = addTile(tiles, { name: "Fair again", query: "source=fair&status=prospect" });
    tiles = addTile(tiles, { name: "VIP", query: "tag=vip" });
    expect(tiles.map((t) => t.name)).toEqual(["Fair", "VIP"]);
    storeTiles("u1", tiles, storage);
    expect(loadTiles("u1", storage)).toEqual(tiles);
    expect(loadTiles("u2", storage)).toEqual([]);
  });
  it("move within the ends", () => {
    const tiles = ["a", "b", "c"].map((name) => ({ id: name, name, list: "contacts", query: "" }) as Tile);
    expect(moveTile(tiles, 2, -1).map((t) => t.id)).toEqual(["a", "c", "b"]);
    expect(moveTile(tiles, 0, -1)).toBe(tiles);
    expect(moveTile(tiles, 0, 5).map((t) => t.id)).toEqual(["b", "c", "a"]);
  });
  it("drill down to the list with the view's filters and count with them", () => {
    const tile: Tile = { id: "x", name: "Fair", list: "contacts", query: "source=fair&status=prospect" };
    expect(tileLink(tile)).toBe("/contacts?source=fair&status=prospect");
    expect(tileCountQuery(tile, "Europe/Rome")).toEqual({ source: "fair", status: "prospect", limit: 1, include_total: true });
    expect(tileCountQuery({ ...tile, query: "created_from=2026-03-01" }, "Europe/Rome"))
      .toEqual({ created_after: "2026-02-28T23:00:00.000Z", limit: 1, include_total: true });
  });
});

describe("the my day tile", () => {
  it("is added once, moves and opens the Today page", () => {
    let tiles = addTile([], { name: "VIP", query: "tag=vip" });
    tiles = addMyDay(addMyDay(tiles));
    expect(tiles.map((t) => t.list)).toEqual(["contacts", "myday"]);
    expect(tileLink(tiles[1])).toBe("/today");
    expect(moveTile(tiles, 1, -1).map((t) => t.list)).toEqual(["myday", "contacts"]);
  });
});
