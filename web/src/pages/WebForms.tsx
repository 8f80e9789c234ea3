import { useMemo, useState } from "react";
import { ActionIcon, Alert, Badge, Button, Card, Checkbox, Code, CopyButton, Grid, Group, Select, Stack, Switch, TagsInput, Text,
         TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { usePermissions } from "../lib/me";
import { mapping, previewDocument, snippet, type FormField } from "../lib/webform";

type LeadForm = Schemas["LeadFormOut"];
type Target = NonNullable<Schemas["LeadFormIn"]["fields"]>[string];
const TARGETS: Target[] = ["full_name", "first_name", "last_name", "email", "phone", "company", "position", "message",
                           "telegram", "whatsapp", "instagram", "vk", "ignore"];
const DEFAULT_ROWS: FormField[] = [
  { name: "name", target: "full_name", label: "", required: true },
  { name: "email", target: "email", label: "", required: false },
  { name: "phone", target: "phone", label: "", required: false },
  { name: "message", target: "message", label: "", required: false },
];

const HONEYPOT = "company_website";  // the API's default name

type Draft = { name: string; rows: FormField[]; source: string; tags: string[]; origins: string[]; redirect: string;
               honeypot: string; active: boolean };

function draftOf(form: LeadForm | null): Draft {
  if (!form) return { name: "", rows: DEFAULT_ROWS, source: "", tags: [], origins: [], redirect: "", honeypot: HONEYPOT, active: true };
  const fields = (form.fields ?? {}) as Record<string, string>;
  return {
    name: form.name ?? "", source: form.source ?? "", tags: form.tags ?? [], origins: form.allowed_origins ?? [],
    redirect: form.redirect_url ?? "", honeypot: form.honeypot_field ?? "", active: form.active ?? true,
    rows: Object.keys(fields).length ? Object.entries(fields).map(([name, target]) => ({ name, target, label: "", required: false }))
      : DEFAULT_ROWS,
  };
}

/** The editor of one form (new when `form` is null), with the live preview and the snippet. */
function FormEditor({ form, onSaved }: { form: LeadForm | null; onSaved: (form: LeadForm) => void }) {
  const { t, i18n } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<Draft>(() => draftOf(form));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setRow = (i: number, row: Partial<FormField>) => set("rows", draft.rows.map((r, j) => (j === i ? { ...r, ...row } : r)));
  const writable = can("forms:write");
  const save = useMutation({
    mutationFn: async () => {
      const body = {
        name: draft.name.trim(), kind: "web" as const, fields: mapping(draft.rows) as Record<string, Target>,
        source: draft.source.trim() || undefined, tags: draft.tags, allowed_origins: draft.origins,
        redirect_url: draft.redirect.trim() || null, active: draft.active,
        honeypot_field: draft.honeypot.trim() || HONEYPOT,
      };
      return form?.id
        ? ok(await api.PATCH("/api/v1/forms/{form_id}", { params: { path: { form_id: form.id } }, body }))
        : ok(await api.POST("/api/v1/forms", { body }));
    },
    onSuccess: (saved) => {
      setErrors({});
      queryClient.invalidateQueries({ queryKey: ["forms"] });
      toasts.show({ color: "green", message: t("saved") });
      onSaved(saved);
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const rows = draft.rows.filter((r) => r.name.trim() && r.target !== "ignore")
    .map((r) => ({ ...r, label: r.label.trim() || t(`wfTarget_${r.target}`) }));
  const action = `${window.location.origin}/api/v1/forms/${form?.key ?? "<key>"}/submissions`;
  const html = snippet({ action, fields: rows, honeypot: draft.honeypot.trim() || null, submit: t("wfSend") });
  const preview = useMemo(() => previewDocument(html, i18n.dir(i18n.language)), [html, i18n]);
  return (
    <Grid>
      <Grid.Col span={{ base: 12, lg: 6 }}>
        <Card withBorder>
          <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }} data-testid="form-editor">
            <Stack gap="xs">
              <TextInput label={t("name")} required value={draft.name} error={errors.name} disabled={!writable}
                         onChange={(e) => set("name", e.currentTarget.value)} data-testid="form-name" />
              <Text fw={600} size="sm">{t("wfFields")}</Text>
              {draft.rows.map((row, i) => (
                <Group key={i} gap={4} wrap="wrap" align="flex-end" data-testid={`form-row-${i}`}>
                  <TextInput label={i === 0 ? t("wfPosted") : undefined} aria-label={t("wfPosted")} value={row.name} w={120}
                             onChange={(e) => setRow(i, { name: e.currentTarget.value })} disabled={!writable} />
                  <Select label={i === 0 ? t("wfMapsTo") : undefined} aria-label={t("wfMapsTo")} value={row.target} allowDeselect={false} w={150}
                          data={TARGETS.map((v) => ({ value: v, label: t(`wfTarget_${v}`) }))} disabled={!writable}
                          onChange={(v) => v && setRow(i, { target: v })} />
                  <TextInput label={i === 0 ? t("wfLabel") : undefined} aria-label={t("wfLabel")} placeholder={t(`wfTarget_${row.target}`)}
                             value={row.label} w={140} onChange={(e) => setRow(i, { label: e.currentTarget.value })} data-testid={`form-label-${i}`} />
                  <Checkbox label={t("wfRequired")} checked={row.required} mb={8} onChange={(e) => setRow(i, { required: e.currentTarget.checked })} />
                  {writable && <ActionIcon variant="subtle" color="red" mb={4} aria-label={t("remove")}
                                           onClick={() => set("rows", draft.rows.filter((_, j) => j !== i))}>✕</ActionIcon>}
                </Group>
              ))}
              {errors.fields && <Text c="red" size="sm">{errors.fields}</Text>}
              {writable && <Button size="compact-xs" variant="subtle" w="fit-content" data-testid="form-add-field"
                                   onClick={() => set("rows", [...draft.rows, { name: "", target: "ignore", label: "", required: false }])}>+ {t("wfAddField")}</Button>}
              <Group grow align="flex-start">
                <TextInput label={t("source")} placeholder="website" value={draft.source} error={errors.source} disabled={!writable}
                           onChange={(e) => set("source", e.currentTarget.value)} />
                <TagsInput label={t("tags")} value={draft.tags} onChange={(v) => set("tags", v)} error={errors.tags} disabled={!writable} />
              </Group>
              <TagsInput label={t("wfOrigins")} description={t("wfOriginsHint")} placeholder="https://www.example.com"
                         value={draft.origins} onChange={(v) => set("origins", v)} error={errors.allowed_origins} disabled={!writable} />
              <Group grow align="flex-start">
                <TextInput label={t("wfRedirect")} placeholder="https://www.example.com/thanks" value={draft.redirect} error={errors.redirect_url}
                           disabled={!writable} onChange={(e) => set("redirect", e.currentTarget.value)} />
                <TextInput label={t("wfHoneypot")} description={t("wfHoneypotHint")} value={draft.honeypot} error={errors.honeypot_field}
                           disabled={!writable} onChange={(e) => set("honeypot", e.currentTarget.value)} />
              </Group>
              <Switch label={t("active")} checked={draft.active} onChange={(e) => set("active", e.currentTarget.checked)} disabled={!writable} />
              {errors._ && <Alert color="red">{errors._}</Alert>}
              {writable && (
                <Group justify="flex-end">
                  <Button type="submit" loading={save.isPending} disabled={!draft.name.trim()} data-testid="form-save">
                    {form ? t("save") : t("wfCreate")}</Button>
                </Group>
              )}
            </Stack>
          </form>
        </Card>
      </Grid.Col>
      <Grid.Col span={{ base: 12, lg: 6 }}>
        <Stack>
          <Card withBorder>
            <Title order={5} mb="xs">{t("wfPreview")}</Title>
            <iframe title={t("wfPreview")} sandbox="" srcDoc={preview} data-testid="form-preview"
                    style={{ width: "100%", height: 80 + rows.length * 62, border: "1px solid var(--mantine-color-gray-3)", borderRadius: 4 }} />
          </Card>
          <Card withBorder data-testid="form-embed">
            <Group justify="space-between" mb="xs">
              <Title order={5}>{t("wfEmbed")}</Title>
              {form?.key && (
                <CopyButton value={html}>
                  {({ copied, copy }) => <Button size="xs" variant="light" onClick={copy} data-testid="form-copy">{copied ? t("copied") : t("copy")}</Button>}
                </CopyButton>
              )}
            </Group>
            {!form?.key && <Text size="xs" c="dimmed" mb="xs">{t("wfEmbedAfterSave")}</Text>}
            <Code block data-testid="form-snippet" style={{ whiteSpace: "pre-wrap", wordBreak: "break-all" }}>{html}</Code>
            <Text size="xs" c="dimmed" mt="xs">{t("wfEmbedHint")}</Text>
          </Card>
        </Stack>
      </Grid.Col>
    </Grid>
  );
}

/** Settings → Web forms: the website forms that capture leads, each with a live preview of
 * what visitors see and the HTML to paste into the site. */
export function WebForms() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const [chosen, setChosen] = useState<string>("new");
  const [editorKey, setEditorKey] = useState("new");  // a new editor only when the user picks another form
  const forms = useQuery({
    queryKey: ["forms"],
    queryFn: async () => ok(await api.GET("/api/v1/forms", { params: { query: { kind: "web", limit: 200 } } })).items ?? [],
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/forms/{form_id}", { params: { path: { form_id: id } } })),
    onSuccess: () => { setChosen("new"); setEditorKey("new"); },
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["forms"] }),
  });
  const form = forms.data?.find((f) => f.id === chosen) ?? null;
  return (
    <Stack>
      <Title order={2}>{t("webForms")}</Title>
      <QueryState loading={forms.isLoading} error={forms.error} retry={() => forms.refetch()} />
      <Group align="flex-end">
        <Select label={t("wfForm")} value={chosen} allowDeselect={false} w={280} data-testid="form-choice"
                data={[...(can("forms:write") ? [{ value: "new", label: `+ ${t("wfNew")}` }] : []),
                       ...(forms.data ?? []).map((f) => ({ value: f.id!, label: f.name ?? f.id! }))]}
                onChange={(v) => { if (v) { setChosen(v); setEditorKey(v); } }} />
        {form && (
          <Group gap="xs">
            <Badge variant="light">{t("wfSubmissions", { count: form.submissions ?? 0 })}</Badge>
            {!!form.spam && <Badge variant="light" color="orange">{t("wfSpam", { count: form.spam })}</Badge>}
            <Code>{form.key}</Code>
            {can("forms:write") && <Button size="compact-xs" color="red" variant="subtle" onClick={() => remove.mutate(form.id!)}>{t("remove")}</Button>}
          </Group>
        )}
      </Group>
      <FormEditor key={editorKey} form={form} onSaved={(saved) => {
        queryClient.setQueryData<LeadForm[]>(["forms"], (list) =>
          list && (list.some((f) => f.id === saved.id) ? list.map((f) => (f.id === saved.id ? saved : f)) : [...list, saved]));
        setChosen(saved.id!);
      }} />
    </Stack>
  );
}
