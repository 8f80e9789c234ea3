// Custom fields on records (GET /custom-fields?entity=): their values shown on a card and
// edited in its form, typed as the admin defined them (Settings → Custom fields).
import { Badge, Checkbox, Group, MultiSelect, NumberInput, Select, Text, Textarea, TextInput } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { useLocale, usePermissions } from "../lib/me";

export type CustomField = Schemas["CustomFieldOut"];
export type Entity = "contact" | "company" | "deal" | "task";
export type CustomValues = Record<string, unknown>;

/** The entity's fields; retired ones too (their stored values are still shown). */
export function useCustomFields(entity: Entity) {
  const { can } = usePermissions();
  return useQuery({
    queryKey: ["custom-fields", entity],
    enabled: can("custom-fields:read"),
    staleTime: 60_000,
    queryFn: async () => ok(await api.GET("/api/v1/custom-fields", {
      params: { query: { entity, include_retired: true } } })).items ?? [],
  });
}

/** One stored value as text in the user's locale. */
export function useShowValue() {
  const { t } = useTranslation();
  const locale = useLocale();
  return (field: CustomField, value: unknown): string => {
    if (value === null || value === undefined || value === "") return "";
    switch (field.type) {
      case "money": {
        const m = value as { amount?: number; currency?: string };
        return locale.money(m.amount, m.currency);
      }
      case "number": return locale.number(value as number);
      case "date": return locale.date(`${value}T12:00:00Z`);
      case "datetime": return locale.dateTime(value as string);
      case "boolean": return value ? t("yes") : t("no");
      case "multi_select": return (value as string[]).join(", ");
      default: return String(value);
    }
  };
}

/** The values of a record, label: value, in the order the fields were defined. */
export function CustomValuesView({ entity, values }: { entity: Entity; values?: CustomValues | null }) {
  const fields = useCustomFields(entity);
  const show = useShowValue();
  const { t } = useTranslation();
  const shown = (fields.data ?? []).filter((f) => show(f, values?.[f.key!]) !== "");
  if (!shown.length) return null;
  return (
    <>
      {shown.map((f) => (
        <Group key={f.key} gap={4} wrap="nowrap" data-testid={`custom-${f.key}`}>
          <Text><b>{f.label}:</b> {show(f, values?.[f.key!])}</Text>
          {f.retired && <Badge size="xs" color="gray" variant="light">{t("retired")}</Badge>}
        </Group>
      ))}
    </>
  );
}

/** The form's inputs for the active fields; `onChange` gets the whole object (null clears). */
export function CustomInputs({ entity, values, onChange, error }: {
  entity: Entity; values: CustomValues; onChange: (values: CustomValues) => void; error?: string;
}) {
  const fields = useCustomFields(entity);
  const set = (key: string, value: unknown) => onChange({ ...values, [key]: value === "" || value === undefined ? null : value });
  // the API names the failing key inside `custom`: {"custom": {"<key>": ["..."]}}
  let errors: Record<string, string> = {};
  try { errors = error ? JSON.parse(error) : {}; } catch { errors = { _: error ?? "" }; }
  const message = (key: string) => {
    const raw = (errors as Record<string, unknown>)[key];
    return raw ? (Array.isArray(raw) ? raw.join(" ") : String(raw)) : undefined;
  };
  return (
    <>
      {(fields.data ?? []).filter((f) => !f.retired).map((f) => {
        const key = f.key!;
        const value = values[key];
        const common = { key, label: f.label, description: f.description || undefined, error: message(key),
                         "data-testid": `custom-input-${key}` };
        switch (f.type) {
          case "long_text":
            return <Textarea {...common} autosize minRows={2} value={(value as string) ?? ""} onChange={(e) => set(key, e.currentTarget.value)} />;
          case "number":
            return <NumberInput {...common} value={(value as number) ?? ""} onChange={(v) => set(key, typeof v === "number" ? v : null)} />;
          case "money": {
            const m = (value as { amount?: number; currency?: string }) ?? {};
            return (
              <Group key={key} grow align="flex-start">
                <NumberInput {...common} key={undefined} decimalScale={2} value={m.amount != null ? m.amount / 100 : ""}
                             onChange={(v) => set(key, typeof v === "number" ? { amount: Math.round(v * 100), currency: m.currency || "EUR" } : null)} />
                <TextInput label=" " maxLength={3} value={m.currency ?? "EUR"} aria-label={`${f.label} currency`}
                           onChange={(e) => m.amount != null && set(key, { amount: m.amount, currency: e.currentTarget.value.toUpperCase() })} />
              </Group>
            );
          }
          case "date":
            return <TextInput {...common} type="date" value={(value as string) ?? ""} onChange={(e) => set(key, e.currentTarget.value)} />;
          case "datetime":
            return <TextInput {...common} type="datetime-local" value={value ? String(value).slice(0, 16) : ""}
                              onChange={(e) => set(key, e.currentTarget.value ? new Date(e.currentTarget.value).toISOString() : null)} />;
          case "boolean":
            return <Checkbox {...common} checked={!!value} onChange={(e) => set(key, e.currentTarget.checked)} />;
          case "select":
            return <Select {...common} clearable data={f.options ?? []} value={(value as string) ?? null} onChange={(v) => set(key, v)} />;
          case "multi_select":
            return <MultiSelect {...common} data={f.options ?? []} value={(value as string[]) ?? []} onChange={(v) => set(key, v.length ? v : null)} />;
          default:
            return <TextInput {...common} type={f.type === "email" ? "email" : f.type === "url" ? "url" : f.type === "phone" ? "tel" : "text"}
                              value={(value as string) ?? ""} onChange={(e) => set(key, e.currentTarget.value)} />;
        }
      })}
      {errors._ && <Text c="red" size="sm">{errors._}</Text>}
    </>
  );
}

/** The keys whose values differ (what a PATCH sends). */
export function changedCustom(before: CustomValues | null | undefined, after: CustomValues): CustomValues {
  const out: CustomValues = {};
  for (const [key, value] of Object.entries(after)) {
    if (JSON.stringify(value ?? null) !== JSON.stringify(before?.[key] ?? null)) out[key] = value;
  }
  return out;
}
