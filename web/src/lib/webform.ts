// A web form's embed snippet: plain HTML that posts form-encoded to the public submissions
// endpoint (no script, no sign-in; the form's redirect_url answers the browser with 303), with
// the honeypot field hidden from people.
export type FormField = { name: string; target: string; label: string; required: boolean };

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const INPUT_TYPE: Record<string, string> = { email: "email", phone: "tel" };

export function snippet({ action, fields, honeypot, submit }: {
  action: string; fields: FormField[]; honeypot?: string | null; submit: string;
}): string {
  const lines = [`<form action="${escape(action)}" method="post" accept-charset="utf-8">`];
  for (const field of fields) {
    const id = `crm-${field.name}`;
    const required = field.required ? " required" : "";
    lines.push(`  <label for="${escape(id)}">${escape(field.label)}</label>`);
    lines.push(field.target === "message"
      ? `  <textarea id="${escape(id)}" name="${escape(field.name)}"${required}></textarea>`
      : `  <input id="${escape(id)}" name="${escape(field.name)}" type="${INPUT_TYPE[field.target] ?? "text"}"${required}>`);
  }
  if (honeypot) {
    lines.push(`  <input name="${escape(honeypot)}" type="text" tabindex="-1" autocomplete="off" aria-hidden="true" `
      + `style="position:absolute;left:-5000px">`);
  }
  lines.push(`  <button type="submit">${escape(submit)}</button>`);
  lines.push("</form>");
  return lines.join("\n");
}

/** The snippet shown in a sandboxed frame: the same markup with a little layout. */
export function previewDocument(html: string, dir: "ltr" | "rtl"): string {
  return `<!doctype html><html dir="${dir}"><head><meta charset="utf-8"><style>
body{font-family:system-ui,sans-serif;margin:12px}form{display:flex;flex-direction:column;gap:6px;max-width:420px}
input,textarea{font:inherit;padding:6px;border:1px solid #ccc;border-radius:4px}button{font:inherit;padding:8px;border:0;
border-radius:4px;background:#228be6;color:#fff}</style></head><body>${html}</body></html>`;
}

/** The API's mapping (posted name -> contact field) from the rows. */
export function mapping(fields: FormField[]): Record<string, string> {
  return Object.fromEntries(fields.filter((f) => f.name.trim()).map((f) => [f.name.trim(), f.target]));
}
