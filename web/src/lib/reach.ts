// A delivery / connection error as people read it. Services store the raw text of what failed
// (e.g. urllib3's "HTTPConnectionPool(host=...): Max retries exceeded ... [Errno 111]
// Connection refused"); the console names the kind of failure in the user's language and keeps
// the raw text for a tooltip.
export type ReachKind = "unreachable" | "timeout" | "auth" | "tls" | "http" | "failed";

const KINDS: [ReachKind, RegExp][] = [
  ["timeout", /timed?[ _-]?out|timeout/i],
  ["tls", /\bSSL|certificate|\bTLS\b/i],
  ["auth", /authenticat|login failed|\b535\b|unauthori[sz]ed|forbidden|invalid credentials|bad credentials/i],
  ["unreachable", /connection ?refused|errno (111|101|113|-2|-3|-5)|newconnectionerror|failed to establish|max retries exceeded|name or service not known|getaddrinfo|name resolution|no route to host|network is unreachable|connection (reset|aborted|error)|unreachable/i],
  ["http", /\b(HTTP|status)[ :]*([45]\d\d)\b/i],
];

export function reachKind(raw: string): { kind: ReachKind; status?: string } {
  for (const [kind, pattern] of KINDS) {
    const match = raw.match(pattern);
    if (match) return kind === "http" ? { kind, status: match[2] } : { kind };
  }
  return { kind: "failed" };
}

/** The translated sentence for a raw error text (t: i18next's). */
export function reachMessage(raw: string, t: (key: string, options?: Record<string, unknown>) => string): string {
  const { kind, status } = reachKind(raw);
  return t(`reach_${kind}`, { status });
}

/** A message from elsewhere as shown: the sentence when it is a connection failure, else as is. */
export function readable(raw: string, t: (key: string, options?: Record<string, unknown>) => string): string {
  return reachKind(raw).kind === "failed" ? raw : reachMessage(raw, t);
}
