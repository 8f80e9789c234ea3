// Message templates (GET /templates): the editor's draft and what the API is sent, which
// templates fit a reply's channel.
import type { Schemas } from "../api/client";

export type Template = Schemas["TemplateOut"];
export const TEMPLATE_CHANNELS = ["any", "email", "sms", "telegram", "whatsapp"] as const;
export type TemplateChannel = (typeof TEMPLATE_CHANNELS)[number];
export type TemplateDraft = { name: string; channel: TemplateChannel; subject: string; body: string; html: string;
                              whatsapp_template: string };

export function draftOf(template?: Template | null): TemplateDraft {
  return { name: template?.name ?? "", channel: (template?.channel as TemplateChannel) ?? "any",
           subject: template?.subject ?? "", body: template?.body ?? "", html: template?.html ?? "",
           whatsapp_template: template?.whatsapp_template ?? "" };
}

/** Which of the draft's fields this channel has (a subject and html: e-mail; an approved name: WhatsApp). */
export function fieldsOf(channel: string) {
  return { subject: channel === "email" || channel === "any", html: channel === "email" || channel === "any",
           whatsapp: channel === "whatsapp" || channel === "any" };
}

/** The API's body: the fields the channel has, empty ones as null. */
export function templateBody(draft: TemplateDraft): Schemas["TemplateIn"] {
  const has = fieldsOf(draft.channel);
  return { name: draft.name.trim(), channel: draft.channel, body: draft.body,
           subject: has.subject && draft.subject.trim() ? draft.subject : null,
           html: has.html && draft.html.trim() ? draft.html : null,
           whatsapp_template: has.whatsapp && draft.whatsapp_template.trim() ? draft.whatsapp_template.trim() : null };
}

/** Templates a reply on `channel` may use (its own and those for any channel), by name. */
export function templatesFor(templates: Template[], channel?: string) {
  return templates.filter((t) => !channel || t.channel === "any" || t.channel === channel)
    .sort((a, b) => (a.name ?? "").localeCompare(b.name ?? ""));
}

/** A contact as a picker shows it: its name, then its first e-mail. */
export function contactLabel(contact: { id?: string; name?: string | null; first_name?: string | null;
                                        last_name?: string | null; emails?: { email?: string }[] | null }) {
  const name = contact.name || [contact.first_name, contact.last_name].filter(Boolean).join(" ");
  const email = contact.emails?.[0]?.email;
  return [name, email].filter(Boolean).join(" · ") || contact.id || "";
}
