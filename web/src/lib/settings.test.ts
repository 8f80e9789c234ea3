import { describe, expect, it } from "vitest";
import { auditQuery, defaultPort, flatErrors, hoursOf, monthOf, serverDraft, serverPatch, setCost, smtpWithLogin, toMinor, weekErrors,
         weekOf } from "./settings";

describe("settings helpers", () => {
  it("flatten nested field errors", () => {
    expect(flatErrors({ name: ["Missing."], imap: { host: ["Bad host."], port: ["Too big.", "Int."] } }))
      .toEqual({ name: "Missing.", "imap.host": "Bad host.", "imap.port": "Too big. Int." });
    expect(flatErrors({ costs: { 0: { period: ["Use YYYY-MM."] } } })).toEqual({ "costs.0.period": "Use YYYY-MM." });
  });
  it("pick the usual mail ports", () => {
    expect([defaultPort("imap", "tls"), defaultPort("imap", "starttls"), defaultPort("imap", "none")]).toEqual([993, 143, 143]);
    expect([defaultPort("smtp", "tls"), defaultPort("smtp", "starttls"), defaultPort("smtp", "none")]).toEqual([465, 587, 25]);
  });
  it("give SMTP the IMAP login when left blank", () => {
    const imap = { host: "imap.x", port: 993, security: "tls" as const, username: " me@x ", password: "pw", verify_tls: true };
    const smtp = { host: " smtp.x ", port: 465, security: "tls" as const, username: "", password: "", verify_tls: true };
    expect(smtpWithLogin(imap, smtp)).toMatchObject({ host: "smtp.x", username: "me@x", password: "pw" });
    expect(smtpWithLogin(imap, { ...smtp, username: "other", password: "p2" })).toMatchObject({ username: "other", password: "p2" });
  });
  it("read amounts as minor units", () => {
    expect(toMinor("12.50")).toBe(1250);
    expect(toMinor("1 200,5")).toBe(120050);
    expect(toMinor("7", 0)).toBe(7);
    expect(toMinor("-3")).toBeNull();
    expect(toMinor("abc")).toBeNull();
  });
  it("set one month's cost, newest first", () => {
    const costs = [{ period: "2026-10", currency: "EUR", amount: 100 }];
    const more = setCost(costs, "2026-11", "EUR", 200);
    expect(more.map((c) => c.period)).toEqual(["2026-11", "2026-10"]);
    expect(setCost(more, "2026-11", "EUR", 300)).toEqual([{ period: "2026-11", currency: "EUR", amount: 300 }, costs[0]]);
    expect(setCost(more, "2026-11", "EUR", 0)).toEqual(costs);
    expect(costs).toHaveLength(1);  // not changed in place
  });
  it("name the month", () => {
    expect(monthOf(new Date("2026-12-06T07:00:00Z"))).toBe("2026-12");
    expect(monthOf(new Date("2027-01-31T23:59:00Z"))).toBe("2027-01");
  });
  it("build the audit query", () => {
    expect(auditQuery({ actor_id: "u1", resource: " contacts ", method: null, from: "2026-12-01", to: "2026-12-31" }))
      .toEqual({ actor_id: "u1", resource: "contacts", from: "2026-12-01T00:00:00Z", to: "2027-01-01T00:00:00Z" });
    expect(auditQuery({ resource: "  " })).toEqual({});
  });
  it("send a mailbox's server side only when it changed", () => {
    const listed = { host: "imap.x", port: 993, security: "tls", username: "me", verify_tls: true, password_set: true };
    const draft = serverDraft(listed as never, "imap");
    expect(draft).toEqual({ host: "imap.x", port: 993, security: "tls", username: "me", password: "", verify_tls: true });
    expect(serverPatch(listed as never, draft)).toBeNull();
    const { password: _none, ...side } = draft;
    expect(serverPatch(listed as never, { ...draft, host: " imap.y " })).toEqual({ ...side, host: "imap.y" });
    expect(serverPatch(listed as never, { ...draft, password: "new" })).toEqual({ ...draft, password: "new" });
    expect(serverDraft(undefined, "smtp")).toMatchObject({ port: 465, security: "tls" });
  });
});

describe("working hours", () => {
  it("turn a week with a short Saturday into start / end plus day_hours, and back", () => {
    const week = weekOf(null, "Europe/Rome");
    expect(week.enabled).toBe(false);
    expect(hoursOf(week).hours).toBeNull();
    week.enabled = true;
    week.days[5] = { day: 6, open: true, start: "10:00", end: "12:00" };
    week.days[4] = { ...week.days[4], open: false };
    const { hours, dayOf } = hoursOf(week);
    expect(hours).toEqual({ start: "09:00", end: "18:00", days: [1, 2, 3, 4, 6], timezone: "Europe/Rome",
                            day_hours: [{ day: 6, start: "10:00", end: "12:00" }] });
    expect(dayOf).toEqual([6]);
    expect(weekOf(hours)).toEqual(week);
    week.days[5].open = false;
    expect(hoursOf(week).hours).toEqual({ start: "09:00", end: "18:00", days: [1, 2, 3, 4], timezone: "Europe/Rome" });
  });
  it("put the API's errors at the days they are about", () => {
    const week = weekOf({ start: "18:00", end: "09:00", days: [1, 2, 6], timezone: "Mars/Base",
                          day_hours: [{ day: 6, start: "12:00", end: "10:00" }] });
    expect(weekErrors(week, { "working_hours.end": "start must be before end.",
                              "working_hours.day_hours.0.end": "start must be before end.",
                              "working_hours.timezone": "Unknown time zone.", "first_response_minutes": "x" }))
      .toEqual({ 1: "start must be before end.", 2: "start must be before end.", 6: "start must be before end.",
                 timezone: "Unknown time zone." });
  });
});
