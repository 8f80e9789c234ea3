// Pure helpers of the settings screens (mailboxes, lead source costs, audit filters);
// unit-tested in settings.test.ts.

/** The API's field errors, nested ones flattened to dotted keys ({imap: {host: [..]}} -> "imap.host"). */
export function flatErrors(fields: Record<string, unknown>, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields ?? {})) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) out[key] = value.map(String).join(" ");
    else if (value && typeof value === "object") Object.assign(out, flatErrors(value as Record<string, unknown>, key));
    else out[key] = String(value);
  }
  return out;
}

export type Security = "tls" | "starttls" | "none";

/** The usual port of a mail server for its security (IMAP 993/143, SMTP 465/587). */
export function defaultPort(protocol: "imap" | "smtp", security: Security): number {
  if (protocol === "imap") return security === "tls" ? 993 : 143;
  return security === "tls" ? 465 : security === "starttls" ? 587 : 25;
}

export type ServerDraft = { host: string; port: number; security: Security; username: string; password: string; verify_tls: boolean };

/** A connect form's SMTP side left blank takes the IMAP login (most providers use one). */
export function smtpWithLogin(imap: ServerDraft, smtp: ServerDraft): ServerDraft {
  return { ...smtp, username: smtp.username.trim() || imap.username.trim(), password: smtp.password || imap.password,
           host: smtp.host.trim(), };
}

export type Cost = { period: string; currency: string; amount: number };

/** "12.50" in a currency with 2 decimals -> 1250 minor units; null when not a number >= 0. */
export function toMinor(text: string, digits = 2): number | null {
  const clean = text.trim().replace(/\s/g, "").replace(",", ".");
  if (!/^\d+(\.\d+)?$/.test(clean)) return null;
  return Math.round(Number(clean) * 10 ** digits);
}

/** The costs with one month's amount set (0 or null removes it), newest month first. */
export function setCost(costs: Cost[], period: string, currency: string, amount: number | null): Cost[] {
  const rest = costs.filter((c) => !(c.period === period && c.currency === currency));
  if (amount) rest.push({ period, currency, amount });
  return rest.sort((a, b) => b.period.localeCompare(a.period) || a.currency.localeCompare(b.currency));
}

/** "2026-12" for a date in its UTC month. */
export function monthOf(day: Date): string {
  return `${day.getUTCFullYear()}-${String(day.getUTCMonth() + 1).padStart(2, "0")}`;
}

export type AuditFilters = { actor_id?: string | null; resource?: string; method?: string | null; from?: string; to?: string };

/** The audit log's query: empty filters left out; days ("2026-12-01") as UTC instants, `to` inclusive of its day. */
export function auditQuery(filters: AuditFilters): Record<string, string> {
  const out: Record<string, string> = {};
  if (filters.actor_id) out.actor_id = filters.actor_id;
  if (filters.resource?.trim()) out.resource = filters.resource.trim();
  if (filters.method) out.method = filters.method;
  if (filters.from) out.from = `${filters.from}T00:00:00Z`;
  if (filters.to) {
    const next = new Date(`${filters.to}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    out.to = next.toISOString().replace(".000Z", "Z");
  }
  return out;
}

/** A mailbox edit's server side as the PATCH takes it: the whole side (the API needs its
 * password again) when anything changed or a password was typed, else null (left as it is). */
export function serverPatch(original: Partial<Omit<ServerDraft, "password">>, draft: ServerDraft): Partial<ServerDraft> | null {
  const { password, ...rest } = { ...draft, host: draft.host.trim(), username: draft.username.trim() };
  const changed = (["host", "port", "security", "username", "verify_tls"] as const)
    .some((k) => (original[k] ?? "") !== rest[k]);
  // no password typed: none sent, so the API says it is missing (not "too short")
  return changed || password ? { ...rest, ...(password ? { password } : {}) } : null;
}

/** The edit form's start: the server as listed (no password, it is never returned). */
export function serverDraft(original: Partial<Omit<ServerDraft, "password">> | undefined, protocol: "imap" | "smtp"): ServerDraft {
  const security = (original?.security ?? "tls") as Security;
  return { host: original?.host ?? "", port: original?.port ?? defaultPort(protocol, security), security,
           username: original?.username ?? "", password: "", verify_tls: original?.verify_tls ?? true };
}

// --- working hours (mailboxes, channels): a week editor <-> the API's WorkingHours ---------
export type DayDraft = { day: number; open: boolean; start: string; end: string };
export type WeekDraft = { enabled: boolean; timezone: string; days: DayDraft[] };
export type WorkingHoursApi = {
  start?: string; end?: string; days?: number[]; timezone?: string;
  day_hours?: { day: number; start: string; end: string }[];
};

/** The week as the editor shows it: seven days (ISO 1 = Monday), each open or closed with
 * its own from / to; `enabled` false when the API has none (the clock always runs). */
export function weekOf(hours: WorkingHoursApi | null | undefined, fallbackZone = "UTC"): WeekDraft {
  const start = hours?.start ?? "09:00", end = hours?.end ?? "18:00";
  const open = new Set(hours?.days ?? [1, 2, 3, 4, 5]);
  const own = new Map((hours?.day_hours ?? []).map((d) => [d.day, d]));
  return {
    enabled: !!hours, timezone: hours?.timezone ?? fallbackZone,
    days: [1, 2, 3, 4, 5, 6, 7].map((day) => ({ day, open: open.has(day), start: own.get(day)?.start ?? start, end: own.get(day)?.end ?? end })),
  };
}

/** The API's WorkingHours from the week: the hours most open days share as start / end,
 * the other days' as day_hours; null when off. `dayOf` maps an entry of day_hours back to
 * its day (where the API's errors go). */
export function hoursOf(week: WeekDraft): { hours: WorkingHoursApi | null; dayOf: number[] } {
  if (!week.enabled) return { hours: null, dayOf: [] };
  const open = week.days.filter((d) => d.open);
  const counts = new Map<string, number>();
  for (const d of open) counts.set(`${d.start}-${d.end}`, (counts.get(`${d.start}-${d.end}`) ?? 0) + 1);
  const [common] = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0] ?? ["09:00-18:00"];
  const [start, end] = common.split("-");
  const others = open.filter((d) => `${d.start}-${d.end}` !== common);
  return {
    hours: { start, end, days: open.map((d) => d.day), timezone: week.timezone,
             ...(others.length ? { day_hours: others.map((d) => ({ day: d.day, start: d.start, end: d.end })) } : {}) },
    dayOf: others.map((d) => d.day),
  };
}

/** The API's errors of `working_hours` (flattened: working_hours.end,
 * working_hours.day_hours.0.start, ...) at the days they are about: {day: message}, and the
 * rest (days, timezone) by their name. */
export function weekErrors(week: WeekDraft, errors: Record<string, string>, prefix = "working_hours"): Record<string, string> {
  const { dayOf } = hoursOf(week);
  const out: Record<string, string> = {};
  const own = new Set(dayOf);
  for (const [key, message] of Object.entries(errors)) {
    if (!key.startsWith(`${prefix}.`)) continue;
    const rest = key.slice(prefix.length + 1);
    const entry = /^day_hours\.(\d+)(\.|$)/.exec(rest);
    if (entry && dayOf[Number(entry[1])]) out[dayOf[Number(entry[1])]] = message;
    else if (rest === "start" || rest === "end") {
      for (const d of week.days) if (d.open && !own.has(d.day)) out[d.day] = message;
    } else out[rest.split(".")[0]] = message;
  }
  return out;
}
