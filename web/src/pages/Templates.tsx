import { useEffect, useState } from "react";
import { Alert, Badge, Button, Card, Grid, Group, Select, Stack, Text, Textarea, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { usePermissions } from "../lib/me";
import { contactLabel, draftOf, fieldsOf, TEMPLATE_CHANNELS, templateBody, type Template, type TemplateChannel,
         type TemplateDraft } from "../lib/templates";

const PLACEHOLDER_EXAMPLES = "{{ contact.first_name }}, {{ deal.title }}, {{ user.name }}";

/** A contact found by name or e-mail (GET /contacts?q=), for a template's preview. */
export function ContactPicker({ value, onChange }: { value: string | null; onChange: (id: string | null) => void }) {
  const { t } = useTranslation();
  const [search, setSearch] = useState("");
  const [q] = useDebouncedValue(search.trim(), 250);
  const [labels, setLabels] = useState<Record<string, string>>({});
  const found = useQuery({
    queryKey: ["contacts", "picker", q],
    enabled: q.length >= 2,
    queryFn: async () => ok(await api.GET("/api/v1/contacts", { params: { query: { q, limit: 10 } } })).items ?? [],
  });
  const options = (found.data ?? []).map((c) => ({ value: c.id!, label: contactLabel(c) }));
  if (value && labels[value] && !options.some((o) => o.value === value)) options.unshift({ value, label: labels[value] });
  return (
    <Select label={t("tplPreviewFor")} placeholder={t("tplFindContact")} searchable clearable data={options} value={value}
            searchValue={search} onSearchChange={setSearch} nothingFoundMessage={q.length >= 2 ? t("nothingHere") : undefined}
            filter={({ options: all }) => all}
            onChange={(id) => { const option = options.find((o) => o.value === id);
                                if (id && option) setLabels((l) => ({ ...l, [id]: option.label })); onChange(id); }}
            data-testid="template-contact" />
  );
}

function Editor({ template, onDone }: { template: Template | null; onDone: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<TemplateDraft>(draftOf(template));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [contactId, setContactId] = useState<string | null>(null);
  useEffect(() => { setDraft(draftOf(template)); setErrors({}); }, [template]);
  const set = (patch: Partial<TemplateDraft>) => setDraft((d) => ({ ...d, ...patch }));
  const has = fieldsOf(draft.channel);
  const [debounced] = useDebouncedValue(draft, 400);
  const preview = useQuery({
    queryKey: ["templates", "preview", debounced, contactId],
    enabled: !!debounced.body.trim(),
    retry: false,
    queryFn: async () => {
      const { name: _name, ...body } = templateBody(debounced);
      return ok(await api.POST("/api/v1/templates/preview", { body: { ...body, contact_id: contactId } }));
    },
  });
  const previewErrors = preview.error ? fieldErrors(preview.error) : {};
  const save = useMutation({
    mutationFn: async () => ok(template
      ? await api.PATCH("/api/v1/templates/{template_id}", { params: { path: { template_id: template.id! } }, body: templateBody(draft) })
      : await api.POST("/api/v1/templates", { body: templateBody(draft) })),
    onSuccess: () => {
      queryClient.invalidateQueries({ queryKey: ["templates"] });
      toasts.show({ color: "green", message: t("saved") });
      onDone();
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const shown = { ...previewErrors, ...errors };
  const rendered = preview.data;
  return (
    <Card withBorder data-testid="template-editor">
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }}>
        <Stack gap="xs">
          <Title order={4}>{template ? t("tplEdit") : t("tplNew")}</Title>
          <TextInput label={t("name")} required value={draft.name} error={shown.name}
                     onChange={(e) => set({ name: e.currentTarget.value })} data-testid="template-name" />
          <Select label={t("cmpChannel")} value={draft.channel} allowDeselect={false}
                  data={TEMPLATE_CHANNELS.map((c) => ({ value: c, label: t(`tplChannel_${c}`) }))}
                  onChange={(v) => v && set({ channel: v as TemplateChannel })} error={shown.channel} data-testid="template-channel" />
          {has.subject && <TextInput label={t("cmpSubject")} value={draft.subject} error={shown.subject}
                                     onChange={(e) => set({ subject: e.currentTarget.value })} data-testid="template-subject" />}
          <Textarea label={t("tplBody")} required autosize minRows={4} value={draft.body} error={shown.body}
                    description={t("tplPlaceholders", { examples: PLACEHOLDER_EXAMPLES, interpolation: { escapeValue: false } })}
                    onChange={(e) => set({ body: e.currentTarget.value })} data-testid="template-body" />
          {has.html && <Textarea label={t("tplHtml")} autosize minRows={2} value={draft.html} error={shown.html}
                                 onChange={(e) => set({ html: e.currentTarget.value })} />}
          {has.whatsapp && <TextInput label={t("tplWhatsapp")} value={draft.whatsapp_template} error={shown.whatsapp_template}
                                      onChange={(e) => set({ whatsapp_template: e.currentTarget.value })} />}
          {shown._ && <Alert color="red">{shown._}</Alert>}
          <ContactPicker value={contactId} onChange={setContactId} />
          <Card withBorder padding="xs" bg="var(--mantine-color-gray-light)" data-testid="template-preview">
            <Text size="xs" c="dimmed">{t("tplPreview")}</Text>
            {rendered?.subject && <Text size="sm" fw={600}>{rendered.subject}</Text>}
            <Text size="sm" style={{ whiteSpace: "pre-wrap", overflowWrap: "anywhere" }}>{rendered?.body ?? ""}</Text>
          </Card>
          <Group justify="flex-end">
            <Button variant="default" onClick={onDone}>{t("cancel")}</Button>
            <Button type="submit" loading={save.isPending} data-testid="template-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}

/** Settings: message templates with placeholders, filled for a client when a reply uses one. */
export function Templates() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const manage = can("templates:manage");
  const [channel, setChannel] = useState<string>("all");
  const [editing, setEditing] = useState<Template | null | undefined>(undefined);
  const list = useQuery({
    queryKey: ["templates", "list", channel],
    queryFn: async () => ok(await api.GET("/api/v1/templates", { params: { query: {
      limit: 200, ...(channel !== "all" ? { channel: channel as TemplateChannel } : {}) } } })).items ?? [],
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/templates/{template_id}", { params: { path: { template_id: id } } })),
    onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["templates"] }); setEditing(undefined); },
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
  });
  const items = list.data ?? [];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("messageTemplates")}</Title>
        {manage && <Button onClick={() => setEditing(null)} data-testid="template-new">{t("tplNew")}</Button>}
      </Group>
      <Select w={200} label={t("cmpChannel")} value={channel} allowDeselect={false} data-testid="template-filter"
              data={[{ value: "all", label: t("all") }, ...TEMPLATE_CHANNELS.filter((c) => c !== "any")
                .map((c) => ({ value: c, label: t(`tplChannel_${c}`) }))]}
              onChange={(v) => v && setChannel(v)} />
      <Grid>
        <Grid.Col span={{ base: 12, md: editing !== undefined ? 5 : 12 }}>
          <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
          <Stack gap={4} data-testid="template-list">
            {!list.isLoading && !items.length && <Text c="dimmed">{t("nothingHere")}</Text>}
            {items.map((item) => (
              <Card key={item.id} withBorder padding="xs" data-testid={`template-${item.id}`}>
                <Group justify="space-between" wrap="nowrap" gap="xs">
                  <Text fw={600} truncate>{item.name}</Text>
                  <Badge size="xs" variant="light">{t(`tplChannel_${item.channel}`)}</Badge>
                </Group>
                {item.subject && <Text size="sm" truncate>{item.subject}</Text>}
                <Text size="sm" c="dimmed" lineClamp={2}>{item.body}</Text>
                {manage && (
                  <Group gap="xs" mt={4} justify="flex-end">
                    <Button size="xs" variant="light" onClick={() => setEditing(item)}>{t("edit")}</Button>
                    <Button size="xs" variant="subtle" color="red" loading={remove.isPending && remove.variables === item.id}
                            onClick={() => { if (window.confirm(t("tplDeleteConfirm", { name: item.name }))) remove.mutate(item.id!); }}>
                      {t("remove")}
                    </Button>
                  </Group>
                )}
              </Card>
            ))}
          </Stack>
        </Grid.Col>
        {editing !== undefined && manage && (
          <Grid.Col span={{ base: 12, md: 7 }}>
            <Editor template={editing} onDone={() => setEditing(undefined)} />
          </Grid.Col>
        )}
      </Grid>
    </Stack>
  );
}
