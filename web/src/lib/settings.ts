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
