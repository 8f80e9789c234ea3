import { useEffect, useState } from "react";
import { ActionIcon, Alert, Anchor, Badge, Button, Card, Checkbox, Grid, Group, Modal, NumberInput, Radio, Select, Stack,
         Table, TagsInput, Text, TextInput, Timeline, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useParams } from "react-router-dom";
import { api, ok, type Contact, type Schemas } from "../api/client";
import { changedCustom, CustomInputs, CustomValuesView, type CustomValues } from "../components/CustomFields";
import { PhoneIcon } from "../components/Icons";
import { QueryState } from "../components/QueryState";
import { CompleteDialog, CreateTaskDialog, fieldErrors } from "../components/TaskDialogs";
import { useClickToCall, type Task } from "../lib/actions";
import { useLocale, usePermissions } from "../lib/me";
import { conflicts, defaultChoices, keepBody, type MergeField, type MergeRecord } from "../lib/merge";
import { contactName, STATUSES } from "./Contacts";
import { TaskRow } from "./Today";

type Draft = {
  first_name: string; last_name: string; position: string; status: string; source: string; tags: string[];
  phones: string[]; emails: string[]; do_not_contact: boolean; custom: CustomValues;
};

function draftOf(c: Contact): Draft {
  return {
    first_name: c.first_name ?? "", last_name: c.last_name ?? "", position: c.position ?? "", status: c.status ?? "lead",
    source: c.source ?? "", tags: c.tags ?? [], phones: (c.phones ?? []).map((p) => p.e164 ?? p.raw ?? ""),
    emails: (c.emails ?? []).map((e) => e.email ?? ""), do_not_contact: !!c.do_not_contact,
    custom: { ...((c.custom as CustomValues | undefined) ?? {}) },
  };
}

/** The details, edited in place: errors from the API next to their field. */
function ContactEditor({ contact, onDone }: { contact: Contact; onDone: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<Draft>(() => draftOf(contact));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const save = useMutation({
    mutationFn: async () => ok(await api.PATCH("/api/v1/contacts/{contact_id}", { params: { path: { contact_id: contact.id! } },
      body: { first_name: draft.first_name, last_name: draft.last_name, position: draft.position || null,
              status: draft.status as "lead", source: draft.source || null, tags: draft.tags, do_not_contact: draft.do_not_contact,
              phones: draft.phones.filter((p) => p.trim()).map((number) => ({ number: number.trim(), type: "mobile" as const })),
              emails: draft.emails.filter((e) => e.trim()).map((email) => ({ email: email.trim(), type: "work" as const })),
              ...(Object.keys(changedCustom(contact.custom as CustomValues, draft.custom)).length
                ? { custom: changedCustom(contact.custom as CustomValues, draft.custom) } : {}) } })),
    onSuccess: (saved) => { queryClient.setQueryData(["contact", contact.id], saved); queryClient.invalidateQueries({ queryKey: ["contact", contact.id] }); onDone(); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const listError = (name: string, i: number) => {
    const raw = errors[name];
    if (!raw) return undefined;
    try { const parsed = JSON.parse(raw); return parsed?.[i] ? JSON.stringify(parsed[i]).replace(/[{}"[\]]/g, " ").trim() : undefined; }
    catch { return i === 0 ? raw : undefined; }
  };
  return (
    <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }} data-testid="contact-editor">
      <Stack gap="xs">
        <Group grow>
          <TextInput label={t("firstName")} value={draft.first_name} error={errors.first_name} name="first_name"
                     onChange={(e) => set("first_name", e.currentTarget.value)} />
          <TextInput label={t("lastName")} value={draft.last_name} error={errors.last_name} name="last_name"
                     onChange={(e) => set("last_name", e.currentTarget.value)} />
        </Group>
        <TextInput label={t("position")} value={draft.position} error={errors.position} onChange={(e) => set("position", e.currentTarget.value)} />
        {draft.phones.map((phone, i) => (
          <Group key={`p${i}`} gap={4} align="flex-end" wrap="nowrap">
            <TextInput style={{ flex: 1 }} label={i === 0 ? t("phones") : undefined} value={phone} error={listError("phones", i)}
                       name={`phone-${i}`} onChange={(e) => { const v = e.currentTarget.value; set("phones", draft.phones.map((p, j) => j === i ? v : p)); }} />
            <ActionIcon variant="subtle" color="red" aria-label={t("remove")} mb={4}
                        onClick={() => set("phones", draft.phones.filter((_, j) => j !== i))}>✕</ActionIcon>
          </Group>
        ))}
        <Button size="compact-xs" variant="subtle" onClick={() => set("phones", [...draft.phones, ""])} data-testid="add-phone">+ {t("phone")}</Button>
        {draft.emails.map((email, i) => (
          <Group key={`e${i}`} gap={4} align="flex-end" wrap="nowrap">
            <TextInput style={{ flex: 1 }} label={i === 0 ? t("emails") : undefined} value={email} error={listError("emails", i)}
                       name={`email-${i}`} onChange={(e) => { const v = e.currentTarget.value; set("emails", draft.emails.map((p, j) => j === i ? v : p)); }} />
            <ActionIcon variant="subtle" color="red" aria-label={t("remove")} mb={4}
                        onClick={() => set("emails", draft.emails.filter((_, j) => j !== i))}>✕</ActionIcon>
          </Group>
        ))}
        <Button size="compact-xs" variant="subtle" onClick={() => set("emails", [...draft.emails, ""])}>+ {t("email")}</Button>
        <Group grow>
          <Select label={t("status")} value={draft.status} allowDeselect={false} error={errors.status}
                  data={STATUSES.map((s) => ({ value: s, label: t(`status_${s}`) }))} onChange={(v) => v && set("status", v)} />
          <TextInput label={t("source")} value={draft.source} error={errors.source} onChange={(e) => set("source", e.currentTarget.value)} />
        </Group>
        <TagsInput label={t("tags")} value={draft.tags} onChange={(v) => set("tags", v)} error={errors.tags} />
        <Checkbox label={t("doNotContact")} checked={draft.do_not_contact} onChange={(e) => set("do_not_contact", e.currentTarget.checked)} />
        <CustomInputs entity="contact" values={draft.custom} onChange={(v) => set("custom", v)} error={errors.custom} />
        {errors._ && <Alert color="red">{errors._}</Alert>}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>{t("cancel")}</Button>
          <Button type="submit" loading={save.isPending} data-testid="contact-save">{t("save")}</Button>
        </Group>
      </Stack>
    </form>
  );
}

function CreateDealDialog({ contact, opened, onClose }: { contact: Contact; opened: boolean; onClose: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [title, setTitle] = useState("");
  const [amount, setAmount] = useState<number | string>(0);
  const [currency, setCurrency] = useState("EUR");
  const [errors, setErrors] = useState<Record<string, string>>({});
  useEffect(() => { if (opened) { setTitle(contactName(contact)); setAmount(0); setErrors({}); } }, [opened, contact]);
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/deals", { body: {
      title: title.trim(), amount: Math.round(Number(amount || 0) * 100), currency: currency as "EUR",
      contact_id: contact.id, company_id: contact.company_id ?? null } })),
    onSuccess: () => { toasts.show({ color: "green", message: t("dealCreated") }); queryClient.invalidateQueries({ queryKey: ["deals"] }); onClose(); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  return (
    <Modal opened={opened} onClose={onClose} title={t("newDeal")}>
      <form onSubmit={(e) => { e.preventDefault(); create.mutate(); }}>
        <Stack>
          <TextInput label={t("title")} required value={title} error={errors.title} onChange={(e) => setTitle(e.currentTarget.value)}
                     data-testid="deal-title" data-autofocus />
          <Group grow>
            <NumberInput label={t("amount")} value={amount} onChange={setAmount} min={0} decimalScale={2} error={errors.amount} data-testid="deal-amount" />
            <Select label={t("currency")} value={currency} allowDeselect={false} onChange={(v) => v && setCurrency(v)} searchable
                    data={["EUR", "USD", "GBP", "ILS", "RUB", "CHF"]} error={errors.currency} />
          </Group>
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button type="submit" loading={create.isPending} data-testid="deal-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** Probable duplicates of this contact (GET /contacts/duplicates); each opens a side-by-side
 * comparison where the user picks which values survive before merging it into this one. */
function Duplicates({ contact }: { contact: Contact }) {
  const { t } = useTranslation();
  const [comparing, setComparing] = useState<string | null>(null);
  const groups = useQuery({
    queryKey: ["contacts", "duplicates"],
    staleTime: 60_000,
    queryFn: async () => ok(await api.GET("/api/v1/contacts/duplicates", { params: { query: { limit: 500 } } })).items ?? [],
  });
  const mine = (groups.data ?? []).filter((g) => g.contact_ids?.includes(contact.id!));
  const others = mine.flatMap((g) => (g.contacts ?? []).filter((c) => c.id !== contact.id)
    .map((c) => ({ ...(c as { id: string; first_name?: string; last_name?: string }), score: g.score ?? 0, reasons: g.reasons ?? [] })));
  if (!others.length) return null;
  return (
    <Card withBorder data-testid="contact-duplicates">
      <Title order={4} mb="xs">{t("possibleDuplicates")}</Title>
      {others.map((o) => (
        <Group key={o.id} justify="space-between" wrap="nowrap" py={2}>
          <Stack gap={0}>
            <Anchor component={Link} to={`/contacts/${o.id}`}>{[o.first_name, o.last_name].filter(Boolean).join(" ") || o.id}</Anchor>
            <Text size="xs" c="dimmed">{Math.round(o.score * 100)}% · {o.reasons.join(", ")}</Text>
          </Stack>
          <Button size="compact-xs" variant="light" onClick={() => setComparing(o.id)}
                  data-testid={`merge-${o.id}`}>{t("compareAndMerge")}</Button>
        </Group>
      ))}
      <MergeDialog survivor={contact} sourceId={comparing} onClose={() => setComparing(null)} />
    </Card>
  );
}

const FIELD_LABELS: Record<MergeField, string> = {
  first_name: "firstName", last_name: "lastName", position: "position", company_id: "company",
  owner_id: "owner", birthday: "birthday", source: "source",
};

function MergeDialog({ survivor, sourceId, onClose }: { survivor: Contact; sourceId: string | null; onClose: () => void }) {
  const { t } = useTranslation();
  const { can, me } = usePermissions();
  const queryClient = useQueryClient();
  const source = useQuery({
    queryKey: ["contact", sourceId],
    enabled: !!sourceId,
    queryFn: async () => ok(await api.GET("/api/v1/contacts/{contact_id}", { params: { path: { contact_id: sourceId! } } })),
  });
  const users = useQuery({
    queryKey: ["users"],
    enabled: can("users:read"),
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200, active: true } } })).items ?? [],
  });
  const [picks, setPicks] = useState<Partial<Record<MergeField, string>>>({});
  const records = source.data ? [survivor, source.data] as (Contact & MergeRecord)[] : [];
  useEffect(() => { if (source.data) setPicks(defaultChoices(survivor as MergeRecord, [source.data as MergeRecord])); },
            [source.data, survivor]);
  const shown = (c: Contact, field: MergeField) => {
    if (field === "company_id") return c.company_name || c.company_id;
    if (field === "owner_id") return c.owner_id === me?.id ? t("me") : users.data?.find((u) => u.id === c.owner_id)?.name || c.owner_id;
    return c[field];
  };
  const merge = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/contacts/{contact_id}/merge", {
      params: { path: { contact_id: survivor.id! } },
      body: { source_ids: [sourceId!], keep: keepBody(survivor as MergeRecord, [source.data as MergeRecord], picks) } })),
    onSuccess: () => {
      toasts.show({ color: "green", message: t("merged") });
      queryClient.invalidateQueries({ queryKey: ["contacts"] });
      queryClient.invalidateQueries({ queryKey: ["contact", survivor.id] });
      onClose();
    },
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
  });
  const fields = records.length ? conflicts(records as MergeRecord[]) : [];
  return (
    <Modal opened={!!sourceId} onClose={onClose} title={t("compareAndMerge")} size="lg">
      <QueryState loading={source.isLoading} error={source.error} retry={() => source.refetch()} />
      {source.data && (
        <Stack data-testid="merge-dialog">
          <Text size="sm" c="dimmed">{t("mergeHint")}</Text>
          <Table.ScrollContainer minWidth={420}>
            <Table>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th />
                  {records.map((c) => <Table.Th key={c.id}>{c.id === survivor.id ? t("thisContact") : contactName(c)}</Table.Th>)}
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {fields.map((field) => (
                  <Table.Tr key={field} data-testid={`merge-field-${field}`}>
                    <Table.Td fw={600}>{t(FIELD_LABELS[field])}</Table.Td>
                    {records.map((c) => (
                      <Table.Td key={c.id}>
                        <Radio name={`keep-${field}`} checked={picks[field] === c.id} label={shown(c, field) || "—"}
                               onChange={() => setPicks((now) => ({ ...now, [field]: c.id! }))}
                               data-testid={`keep-${field}-${c.id === survivor.id ? "this" : "other"}`} />
                      </Table.Td>
                    ))}
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Text size="xs" c="dimmed">{t("mergeKeepsAll")}</Text>
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button onClick={() => merge.mutate()} loading={merge.isPending} data-testid="merge-confirm">{t("mergeIntoThis")}</Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}

const TIMELINE_KINDS = ["call", "task", "deal", "request", "contact"] as const;

export function ContactCard() {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const call = useClickToCall();
  const { contactId = "" } = useParams();
  const [editing, setEditing] = useState(false);
  const [taskOpen, setTaskOpen] = useState(false);
  const [dealOpen, setDealOpen] = useState(false);
  const [completing, setCompleting] = useState<Task | null>(null);
  const [kind, setKind] = useState<string | null>(null);
  const contact = useQuery({
    queryKey: ["contact", contactId],
    queryFn: async () => ok(await api.GET("/api/v1/contacts/{contact_id}", { params: { path: { contact_id: contactId } } })),
  });
  const timeline = useQuery({
    queryKey: ["contact", contactId, "timeline"],
    queryFn: async () => ok(await api.GET("/api/v1/contacts/{contact_id}/timeline", {
      params: { path: { contact_id: contactId }, query: { limit: 100 } } })).items ?? [],
  });
  const deals = useQuery({
    queryKey: ["deals", "contact", contactId],
    enabled: can("deals:read"),
    queryFn: async () => ok(await api.GET("/api/v1/deals", { params: { query: { contact_id: contactId, status: "open", limit: 50 } } })).items ?? [],
  });
  const tasks = useQuery({
    queryKey: ["tasks", "contact", contactId],
    enabled: can("tasks:read"),
    queryFn: async () => ok(await api.GET("/api/v1/tasks", { params: { query: { contact_id: contactId, status: "open", sort: "due_at", limit: 50 } } })).items ?? [],
  });
  const c = contact.data;
  const blocked = !!c?.do_not_contact;
  const entries = (timeline.data ?? []).filter((e: Schemas["TimelineEntry"]) => !kind || (e.kind ?? "").includes(kind));
  return (
    <Stack>
      <Group><Button component={Link} to="/contacts" variant="subtle" size="xs">← {t("back")}</Button></Group>
      <QueryState loading={contact.isLoading} error={contact.error} retry={() => contact.refetch()} />
      {c && (
        <Grid>
          <Grid.Col span={{ base: 12, md: 5 }}>
            <Stack>
              <Card withBorder data-testid="contact-card">
                <Group justify="space-between" wrap="nowrap">
                  <Title order={2}>{contactName(c)}</Title>
                  {!editing && can("contacts:write") && (
                    <Button size="xs" variant="light" onClick={() => setEditing(true)} data-testid="contact-edit">{t("edit")}</Button>
                  )}
                </Group>
                {blocked && <Badge color="red" mt="xs" data-testid="dnc">{t("doNotContact")}</Badge>}
                {editing ? <ContactEditor contact={c} onDone={() => setEditing(false)} /> : (
                  <Stack gap="xs" mt="md">
                    {c.position && <Text><b>{t("position")}:</b> {c.position}</Text>}
                    {c.company_id && <Text><b>{t("company")}:</b>{" "}
                      <Anchor component={Link} to={`/companies/${c.company_id}`}>{c.company_name ?? t("company")}</Anchor></Text>}
                    {(c.phones ?? []).map((p) => (
                      <Group key={p.e164 ?? p.raw} gap="xs" wrap="nowrap">
                        <Text><b>{t("phone")}:</b>{" "}
                          {blocked ? (p.e164 ?? p.raw) : <Anchor href={`tel:${p.e164 ?? p.raw ?? ""}`}>{p.e164 ?? p.raw}</Anchor>}</Text>
                        {!blocked && can("calls:originate") && (
                          <Button size="compact-xs" variant="light" loading={call.isPending} data-testid="contact-call"
                                  onClick={() => call.mutate({ to: p.e164 ?? p.raw, contactId: c.id })} leftSection={<PhoneIcon />}>{t("call")}</Button>
                        )}
                      </Group>
                    ))}
                    {(c.emails ?? []).map((e) => (
                      <Text key={e.email}><b>{t("email")}:</b>{" "}
                        {blocked ? e.email : <Anchor href={`mailto:${e.email}`}>{e.email}</Anchor>}</Text>
                    ))}
                    <Text><b>{t("status")}:</b> {t(`status_${c.status ?? "lead"}`)}</Text>
                    {c.source && <Text><b>{t("source")}:</b> {c.source}</Text>}
                    {!!c.tags?.length && <Group gap={4}>{c.tags.map((tag) => <Badge key={tag} variant="outline">{tag}</Badge>)}</Group>}
                    <CustomValuesView entity="contact" values={c.custom as CustomValues} />
                    <Group mt="xs">
                      {can("tasks:write") && <Button size="xs" onClick={() => setTaskOpen(true)} data-testid="contact-new-task">{t("newTask")}</Button>}
                      {can("deals:write") && <Button size="xs" variant="light" onClick={() => setDealOpen(true)} data-testid="contact-new-deal">{t("newDeal")}</Button>}
                    </Group>
                  </Stack>
                )}
              </Card>
              {can("contacts:write") && <Duplicates contact={c} />}
              {can("deals:read") && (
                <Card withBorder data-testid="contact-deals">
                  <Title order={4} mb="xs">{t("openDeals")}</Title>
                  {(deals.data ?? []).map((d) => (
                    <Group key={d.id} justify="space-between"><Text size="sm">{d.title}</Text>
                      <Text size="sm" c="dimmed">{locale.money(d.amount, d.currency)}</Text></Group>
                  ))}
                  {deals.data?.length === 0 && <Text size="sm" c="dimmed">{t("nothingHere")}</Text>}
                </Card>
              )}
              {can("tasks:read") && (
                <Card withBorder data-testid="contact-tasks">
                  <Title order={4} mb="xs">{t("openTasks")}</Title>
                  {(tasks.data ?? []).map((task) => <TaskRow key={task.id} task={task} onComplete={setCompleting} noCall={blocked} />)}
                  {tasks.data?.length === 0 && <Text size="sm" c="dimmed">{t("nothingHere")}</Text>}
                </Card>
              )}
            </Stack>
          </Grid.Col>
          <Grid.Col span={{ base: 12, md: 7 }}>
            <Card withBorder>
              <Group justify="space-between" mb="md">
                <Title order={3}>{t("timeline")}</Title>
                <Select size="xs" w={160} value={kind} onChange={setKind} clearable placeholder={t("all")} aria-label={t("kind")}
                        data={TIMELINE_KINDS.map((k) => ({ value: k, label: t(`timeline_${k}`) }))} />
              </Group>
              <QueryState loading={timeline.isLoading} error={timeline.error} retry={() => timeline.refetch()} />
              {timeline.data && !entries.length && <Text c="dimmed">{t("noTimeline")}</Text>}
              <Timeline bulletSize={14} lineWidth={2} data-testid="timeline">
                {entries.map((entry) => (
                  <Timeline.Item key={entry.id} title={entry.summary ?? entry.kind}>
                    <Text size="xs" c="dimmed">{entry.kind} · {locale.dateTime(entry.occurred_at)}</Text>
                  </Timeline.Item>
                ))}
              </Timeline>
            </Card>
          </Grid.Col>
          <CreateTaskDialog opened={taskOpen} onClose={() => setTaskOpen(false)} contactId={c.id} title={`${t("kind_call")}: ${contactName(c)}`} />
          <CreateDealDialog contact={c} opened={dealOpen} onClose={() => setDealOpen(false)} />
          <CompleteDialog task={completing} onClose={() => setCompleting(null)} />
        </Grid>
      )}
    </Stack>
  );
}
