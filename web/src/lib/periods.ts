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

/** Change against the previous period, as a fraction; null when there is nothing to compare. */
export function change(now: number | null | undefined, before: number | null | undefined) {
  if (now == null || before == null || before === 0) return null;
  return (now - before) / before;
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
