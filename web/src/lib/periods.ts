// Dashboard periods and comparisons; pure, unit-tested.
import { addDays, zonedToUtc } from "./format";

export type Period = { from: string; to: string; previousFrom: string; previousTo: string };

/** The last `days` days up to the end of `today` (YYYY-MM-DD in the user's zone), and the
 * same length just before it, as UTC ISO instants. */
export function lastDays(today: string, days: number, timeZone?: string | null): Period {
  const end = addDays(today, 1);
  const start = addDays(end, -days);
  const at = (day: string) => zonedToUtc(day, 0, 0, timeZone).toISOString();
  return { from: at(start), to: at(end), previousFrom: at(addDays(start, -days)), previousTo: at(start) };
}

type SalesRow = { key?: string | null; won_count?: number; lost_count?: number;
                  amounts?: { currency?: string; won_amount?: number }[] };

/** Won deals and money over every row of a sales report (per currency). */
export function salesTotals(rows: SalesRow[] | undefined) {
  let won = 0, lost = 0;
  const money = new Map<string, number>();
  for (const row of rows ?? []) {
    won += row.won_count ?? 0;
    lost += row.lost_count ?? 0;
    for (const a of row.amounts ?? []) {
      if (a.currency) money.set(a.currency, (money.get(a.currency) ?? 0) + (a.won_amount ?? 0));
    }
  }
  const amounts = [...money.entries()].sort((a, b) => b[1] - a[1]).map(([currency, amount]) => ({ currency, amount }));
  return { won, lost, winRate: won + lost ? won / (won + lost) : null, amounts };
}

/** A sales report by month as chart points in one currency. */
export function monthSeries(rows: SalesRow[] | undefined, currency: string) {
  return (rows ?? []).filter((r) => r.key).sort((a, b) => String(a.key).localeCompare(String(b.key)))
    .map((r) => ({ month: String(r.key), amount: (r.amounts ?? []).find((a) => a.currency === currency)?.won_amount ?? 0,
                   won: r.won_count ?? 0 }));
}

/** How far a month (YYYY-MM-DD of today) has gone, 0..1: what a plan should have reached. */
export function monthElapsed(today: string) {
  const [y, m, d] = today.split("-").map(Number);
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Math.min(1, d / days);
}

/** Behind plan: under 80% of the share of the period gone (pro rata), after its first days. */
export function behindPlan(percent: number | null | undefined, elapsed: number) {
  if (percent == null || elapsed < 0.2) return false;
  return percent / 100 < 0.8 * elapsed;
}

/** This calendar month in the user's zone (to its end), and the month before it. */
export function thisMonth(today: string, timeZone?: string | null): Period {
  const first = `${today.slice(0, 7)}-01`;
  const month = (day: string, by: number) => shiftMonth(day.slice(0, 7), by) + "-01";
  const at = (day: string) => zonedToUtc(day, 0, 0, timeZone).toISOString();
  return { from: at(first), to: at(month(first, 1)), previousFrom: at(month(first, -1)), previousTo: at(first) };
}

/** The dashboard's period choice ("7", "30", "90" days, or "month"). */
export function periodOf(choice: string, today: string, timeZone?: string | null): Period {
  return choice === "month" ? thisMonth(today, timeZone) : lastDays(today, Number(choice), timeZone);
}

/** The days just before [fromDay, toDay] (both inclusive), as many of them. */
export function previousDays(fromDay: string, toDay: string) {
  const length = Math.round((Date.parse(`${toDay}T00:00:00Z`) - Date.parse(`${fromDay}T00:00:00Z`)) / 86_400_000) + 1;
  return { fromDay: addDays(fromDay, -length), toDay: addDays(fromDay, -1) };
}

/** YYYY-MM moved by `by` months. */
export function shiftMonth(month: string, by: number) {
  const [y, m] = month.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1 + by, 1)).toISOString().slice(0, 7);
}

/** A month (YYYY-MM) as the UTC instants [its first day, the next month's) - how the sales
 * report groups by month - and as days [first, first of next) for date filters. */
export function monthBounds(month: string) {
  const next = shiftMonth(month, 1);
  return { from: `${month}-01T00:00:00.000Z`, to: `${next}-01T00:00:00.000Z`, fromDay: `${month}-01`, toDay: `${next}-01` };
}

export type Trend = { diff: number; ratio: number | null; better: boolean | null };

/** A figure against the previous period's: the difference, the ratio (null when the
 * previous was 0 or is unknown) and whether that is better (lowerIsBetter: e.g. missed calls). */
export function trend(now: number | null | undefined, before: number | null | undefined, lowerIsBetter = false): Trend | null {
  if (now == null || before == null) return null;
  const diff = now - before;
  return { diff, ratio: before === 0 ? null : diff / before, better: diff === 0 ? null : (diff > 0) !== lowerIsBetter };
}

/** Chart points with the previous period's value of each at its side (`previous`), matched
 * by position: day i of the period with day i of the one before, month i with month i. */
export function withPrevious<T extends object>(now: T[], before: T[], value: (row: T) => number) {
  return now.map((row, i) => ({ ...row, previous: i < before.length ? value(before[i]) : 0 }));
}

/** Rows keyed by `key`, each with the previous period's row of the same key. */
export function pairByKey<T>(now: T[], before: T[], key: (row: T) => string) {
  const earlier = new Map(before.map((row) => [key(row), row]));
  const keys = new Set(now.map(key));
  return [...now.map((row) => ({ key: key(row), now: row as T | undefined, before: earlier.get(key(row)) })),
          ...before.filter((row) => !keys.has(key(row))).map((row) => ({ key: key(row), now: undefined, before: row as T | undefined }))];
}

/** The deals list with a drill-down's filters (empty ones left out). */
export function dealsLink(filters: Record<string, string | null | undefined>) {
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v) as [string, string][]);
  return `/deals${query.size ? `?${query}` : ""}`;
}

/** The won deals behind a sales figure: closed in [from, to), of an owner, in a currency. */
export const wonDealsLink = (from: string, to: string, currency: string, ownerId?: string | null, pipelineId?: string | null) =>
  dealsLink({ status: "won", closed_after: from, closed_before: to, currency, owner_id: ownerId, pipeline_id: pipelineId });

/** The open deals behind a forecast row: expected to close in its month (YYYY-MM), in its currency. */
export function forecastDealsLink(month: string, currency: string, ownerId?: string | null, pipelineId?: string | null) {
  const bounds = monthBounds(month);
  return dealsLink({ status: "open", expected_close_from: bounds.fromDay, expected_close_to: bounds.toDay, currency,
                     owner_id: ownerId, pipeline_id: pipelineId });
}
