// Dates, numbers and money per the user's language and time zone (Intl); pure, unit-tested.

/** Integer minor units + ISO currency, e.g. (150000, "EUR", "it") -> "1.500,00 €". */
export function money(amount: number | null | undefined, currency: string | null | undefined, language: string) {
  if (amount == null || !currency) return "";
  try {
    const format = new Intl.NumberFormat(language, { style: "currency", currency });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(amount / 10 ** digits);
  } catch {
    return `${(amount / 100).toFixed(2)} ${currency}`;
  }
}

export function number(value: number | null | undefined, language: string) {
  return value == null ? "" : new Intl.NumberFormat(language).format(value);
}

function safeZone(timeZone?: string | null) {
  if (!timeZone) return undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone });
    return timeZone;
  } catch {
    return undefined;
  }
}

export function dateTime(iso: string | null | undefined, language: string, timeZone?: string | null) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "short",
                                            timeZone: safeZone(timeZone) }).format(new Date(iso));
}

export function date(iso: string | null | undefined, language: string, timeZone?: string | null) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(language, { dateStyle: "medium", timeZone: safeZone(timeZone) })
    .format(new Date(iso));
}

export function time(iso: string | null | undefined, language: string, timeZone?: string | null) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(language, { timeStyle: "short", timeZone: safeZone(timeZone) })
    .format(new Date(iso));
}

export function duration(seconds: number | null | undefined) {
  if (seconds == null) return "";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

type Parts = { year: number; month: number; day: number; hour: number; minute: number };

/** The wall-clock parts of an instant in a time zone. */
export function zonedParts(instant: Date, timeZone?: string | null): Parts {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: safeZone(timeZone), hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit" }).formatToParts(instant);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return { year: get("year"), month: get("month"), day: get("day"), hour: get("hour") % 24, minute: get("minute") };
}

/** "YYYY-MM-DD" of an instant in a time zone: the calendar cell it belongs to. */
export function dayKey(instant: Date | string, timeZone?: string | null) {
  const p = zonedParts(typeof instant === "string" ? new Date(instant) : instant, timeZone);
  return `${p.year}-${String(p.month).padStart(2, "0")}-${String(p.day).padStart(2, "0")}`;
}

/** The instant when the wall clock in `timeZone` shows day (YYYY-MM-DD) at hour:minute. */
export function zonedToUtc(day: string, hour: number, minute: number, timeZone?: string | null) {
  const [y, m, d] = day.split("-").map(Number);
  const guess = Date.UTC(y, m - 1, d, hour, minute);
  // the zone's offset at the guess, applied twice to settle across a DST change
  let instant = guess;
  for (let i = 0; i < 2; i++) {
    const p = zonedParts(new Date(instant), timeZone);
    const shown = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
    instant += guess - shown;
  }
  return new Date(instant);
}

/** A due time moved to another day, keeping its time of day in the user's zone. */
export function moveToDay(iso: string | null | undefined, day: string, timeZone?: string | null) {
  const p = iso ? zonedParts(new Date(iso), timeZone) : { hour: 9, minute: 0 };
  return zonedToUtc(day, p.hour, p.minute, timeZone).toISOString();
}

/** Add days to a YYYY-MM-DD key (calendar arithmetic, no time zone involved). */
export function addDays(day: string, days: number) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** The days of the week containing `day` (Monday first) or of the month grid (whole weeks). */
export function calendarDays(day: string, view: "week" | "month") {
  const [y, m] = day.split("-").map(Number);
  const weekday = (key: string) => (new Date(`${key}T00:00:00Z`).getUTCDay() + 6) % 7;
  if (view === "week") {
    const start = addDays(day, -weekday(day));
    return Array.from({ length: 7 }, (_, i) => addDays(start, i));
  }
  const first = `${y}-${String(m).padStart(2, "0")}-01`;
  const start = addDays(first, -weekday(first));
  const last = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
  const end = addDays(last, 6 - weekday(last));
  const days: string[] = [];
  for (let key = start; key <= end; key = addDays(key, 1)) days.push(key);
  return days;
}

/** Totals of amounts per currency (a board column can mix currencies). */
export function totalsByCurrency(items: { amount?: number | null; currency?: string | null }[]) {
  const totals = new Map<string, number>();
  for (const item of items) {
    if (item.amount == null || !item.currency) continue;
    totals.set(item.currency, (totals.get(item.currency) ?? 0) + item.amount);
  }
  return [...totals.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([currency, amount]) => ({ currency, amount }));
}
