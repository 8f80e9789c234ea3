import { describe, expect, it } from "vitest";
import { contactLabel, draftOf, fieldsOf, templateBody, templatesFor, type Template } from "./templates";

describe("message templates", () => {
  it("send only the fields the channel has, empty ones as null", () => {
    const draft = { ...draftOf(null), name: " Hi ", channel: "sms" as const, subject: "S", body: "B", html: "<p>x</p>",
                    whatsapp_template: "hello" };
    expect(templateBody(draft)).toEqual({ name: "Hi", channel: "sms", body: "B", subject: null, html: null,
                                          whatsapp_template: null });
    expect(templateBody({ ...draft, channel: "email" })).toMatchObject({ subject: "S", html: "<p>x</p>", whatsapp_template: null });
    expect(templateBody({ ...draft, channel: "any", subject: "  " })).toMatchObject({ subject: null, whatsapp_template: "hello" });
    expect(fieldsOf("whatsapp")).toEqual({ subject: false, html: false, whatsapp: true });
  });
  it("offer a reply the templates of its channel and those for any, by name", () => {
    const all = [{ id: "1", name: "b", channel: "sms" }, { id: "2", name: "a", channel: "any" },
                 { id: "3", name: "c", channel: "email" }] as Template[];
    expect(templatesFor(all, "email").map((t) => t.id)).toEqual(["2", "3"]);
    expect(templatesFor(all).map((t) => t.id)).toEqual(["2", "1", "3"]);
  });
  it("label a contact by name and e-mail", () => {
    expect(contactLabel({ id: "x", first_name: "Ann", last_name: "Lee", emails: [{ email: "a@b.c" }] })).toBe("Ann Lee · a@b.c");
    expect(contactLabel({ id: "x" })).toBe("x");
  });
});
