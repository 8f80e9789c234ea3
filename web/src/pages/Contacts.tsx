import { memo, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Anchor, Badge, Button, Center, Checkbox, Group, Modal, Paper, Select, SimpleGrid, Stack, Table, Text,
         TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { notifications as toasts } from "@mantine/notifications";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useSearchParams } from "react-router-dom";
import { api, ok, tokenStore, type Contact } from "../api/client";
import { useCustomFields, useShowValue, type CustomField } from "../components/CustomFields";
import { QueryState } from "../components/QueryState";
import { useLocale, usePermissions } from "../lib/me";
import { contactsQuery, deleteView, filtersQuery, loadViews, saveView, toCsv, type SavedView } from "../lib/views";

const PAGE = 50;
export const STATUSES = ["lead", "prospect", "customer", "churned", "inactive"] as const;
const FILTERS = ["q", "tag", "owner_id", "status", "source", "not_contacted_since", "created_from", "created_to", "sort"] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

export function contactName(contact: Contact) {
  return [contact.first_name, contact.last_name].filter(Boolean).join(" ") || contact.emails?.[0]?.email || "—";
}

function download(name: string, blob: Blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Search as you type, filters, sort, infinite scroll over keyset cursors, bulk actions,
 * saved views. The filters live in the URL, so a view is a link too. */
export function Contacts() {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can, scope, me } = usePermissions();
  const queryClient = useQueryClient();
  const [params, setParams] = useSearchParams();
  const filters: Filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? undefined]));
  const [text, setText] = useState(filters.q ?? "");
  // results within 300 ms of the last keystroke (bench_console): the API answers in ~20 ms
  const [q] = useDebouncedValue(text.trim(), 100);
  // custom fields as columns on wide screens: the required ones (the minimal data set) first,
  // then the newest, three at most
  const customFields = useCustomFields("contact");
  const customColumns = useMemo(() => (customFields.data ?? []).filter((f) => !f.retired)
    .sort((a, b) => Number(!!b.required) - Number(!!a.required) || (b.created_at ?? "").localeCompare(a.created_at ?? ""))
    .slice(0, 3), [customFields.data]);
  const setFilter = (name: keyof Filters, value: string | null | undefined) =>
    setParams((now) => { const next = new URLSearchParams(now); if (value) next.set(name, value); else next.delete(name); return next; }, { replace: true });
  useEffect(() => { if ((params.get("q") ?? "") !== q) setFilter("q", q); }, [q]); // eslint-disable-line react-hooks/exhaustive-deps

  const query = contactsQuery(filters, locale.timeZone);
  const list = useInfiniteQuery({
    queryKey: ["contacts", "list", query],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/contacts", { params: { query: { ...query, limit: PAGE, cursor: pageParam } } })),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  // the search service finds what the list's exact keys cannot (a phone fragment, a typo);
  // its index follows writes a moment later, so an empty answer is asked again for a while
  const search = useQuery({
    queryKey: ["contacts", "search", filters.q],
    enabled: !!filters.q && filters.q.length >= 3,
    queryFn: async () => ok(await api.GET("/api/v1/search", { params: { query: { q: filters.q!, types: "contact", limit: 10 } } })).items ?? [],
    refetchInterval: (query) => (query.state.data?.length || query.state.dataUpdateCount > 10 ? false : 1500),
  });
  const users = useQuery({
    queryKey: ["users"],
    enabled: can("users:read"),
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200, active: true } } })).items ?? [],
  });
  const owners = [...(me?.id ? [{ value: me.id, label: t("me") }] : []),
    ...(users.data ?? []).filter((u) => u.id !== me?.id).map((u) => ({ value: u.id!, label: u.name || u.email || u.id! }))];

  const sentinel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const node = sentinel.current;
    if (!node) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries[0].isIntersecting && list.hasNextPage && !list.isFetchingNextPage) list.fetchNextPage();
    }, { rootMargin: "400px" });
    observer.observe(node);
    return () => observer.disconnect();
  }, [list]);
  const contacts = useMemo(() => list.data?.pages.flatMap((page) => page.items ?? []) ?? [], [list.data]);
  const listed = new Set(contacts.map((c) => c.id));
  const hits = (search.data ?? []).filter((hit) => !listed.has(hit.id));

  // bulk selection
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const chosen = useMemo(() => contacts.filter((c) => selected.has(c.id ?? "")), [contacts, selected]);
  const allChosen = contacts.length > 0 && chosen.length === contacts.length;
  const toggle = useCallback((id: string) => setSelected((now) => { const next = new Set(now); if (next.has(id)) next.delete(id); else next.add(id); return next; }), []);
  const [bulk, setBulk] = useState<"tag" | "owner" | null>(null);
  const [bulkValue, setBulkValue] = useState<string | null>("");
  const [busy, setBusy] = useState(false);
  const runBulk = async () => {
    setBusy(true);
    let failed = 0;
    for (let i = 0; i < chosen.length; i += 5) {
      const results = await Promise.allSettled(chosen.slice(i, i + 5).map(async (c) => ok(await api.PATCH("/api/v1/contacts/{contact_id}", {
        params: { path: { contact_id: c.id! } },
        body: bulk === "tag" ? { tags: [...new Set([...(c.tags ?? []), bulkValue ?? ""])] } : { owner_id: bulkValue || null } }))));
      failed += results.filter((r) => r.status === "rejected").length;
    }
    setBusy(false); setBulk(null); setSelected(new Set());
    toasts.show({ color: failed ? "orange" : "green", message: t("bulkDone", { done: chosen.length - failed, failed }) });
    queryClient.invalidateQueries({ queryKey: ["contacts"] });
  };
  const exportSelected = () => download("contacts.csv", new Blob([toCsv([
    ["id", "first_name", "last_name", "phone", "email", "status", "tags"],
    ...chosen.map((c) => [c.id, c.first_name, c.last_name, c.phones?.[0]?.e164, c.emails?.[0]?.email, c.status, (c.tags ?? []).join(";")]),
  ])], { type: "text/csv" }));
  const exportAll = async () => {
    const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v) as [string, string][]);
    search.set("format", "csv");
    const response = await fetch(`/api/v1/contacts/export?${search}`, { headers: { Authorization: `Bearer ${tokenStore.get()}` } });
    if (!response.ok) { toasts.show({ color: "red", message: `${t("actionFailed")} (${response.status})` }); return; }
    download("contacts.csv", await response.blob());
  };
  const canAssign = ["all", "team"].includes(scope("contacts:write") ?? "") && can("users:read");

  // saved views
  const userId = me?.id ?? "anonymous";
  const [views, setViews] = useState<SavedView[]>([]);
  useEffect(() => setViews(loadViews(userId)), [userId]);
  const current = filtersQuery(filters);
  const activeView = views.find((v) => v.query === current)?.name ?? null;
  const [naming, setNaming] = useState(false);
  const [viewName, setViewName] = useState("");
  const [showFilters, setShowFilters] = useState(FILTERS.some((f) => f !== "q" && f !== "sort" && filters[f]));

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("contacts")}</Title>
        <Group gap="xs">
          <Select size="xs" w={170} placeholder={t("savedViews")} value={activeView} data-testid="saved-views" clearable
                  data={views.map((v) => v.name)} aria-label={t("savedViews")}
                  onChange={(name) => { const view = views.find((v) => v.name === name); setParams(new URLSearchParams(view?.query ?? ""), { replace: true });
                                        setText(new URLSearchParams(view?.query ?? "").get("q") ?? ""); }} />
          <Button size="xs" variant="default" onClick={() => { setViewName(""); setNaming(true); }} data-testid="save-view">{t("saveView")}</Button>
          {activeView && <Button size="xs" variant="subtle" color="red" onClick={() => setViews(deleteView(userId, activeView))}>{t("deleteView")}</Button>}
          <Button size="xs" variant="default" onClick={exportAll} data-testid="export">{t("export")}</Button>
        </Group>
      </Group>
      <Group gap="xs" wrap="nowrap">
        <TextInput style={{ flex: 1 }} placeholder={t("search")} value={text} aria-label={t("search")} data-testid="contact-search"
                   onChange={(e) => setText(e.currentTarget.value)} autoFocus />
        <Button variant={showFilters ? "light" : "default"} onClick={() => setShowFilters((v) => !v)} data-testid="toggle-filters">{t("filters")}</Button>
      </Group>
      {showFilters && (
        <Paper withBorder p="sm" data-testid="contact-filters">
          <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }} spacing="xs">
            <TextInput label={t("tag")} value={filters.tag ?? ""} onChange={(e) => setFilter("tag", e.currentTarget.value)} data-testid="filter-tag" />
            <Select label={t("owner")} value={filters.owner_id ?? null} onChange={(v) => setFilter("owner_id", v)} clearable
                    placeholder={t("anyone")} data={owners} searchable />
            <Select label={t("status")} value={filters.status ?? null} onChange={(v) => setFilter("status", v)} clearable placeholder={t("any")}
                    data={STATUSES.map((s) => ({ value: s, label: t(`status_${s}`) }))} data-testid="filter-status" />
            <TextInput label={t("source")} value={filters.source ?? ""} onChange={(e) => setFilter("source", e.currentTarget.value)} />
            <TextInput type="date" label={t("notContactedSince")} value={filters.not_contacted_since ?? ""}
                       onChange={(e) => setFilter("not_contacted_since", e.currentTarget.value)} />
            <TextInput type="date" label={t("createdFrom")} value={filters.created_from ?? ""} onChange={(e) => setFilter("created_from", e.currentTarget.value)} />
            <TextInput type="date" label={t("createdTo")} value={filters.created_to ?? ""} onChange={(e) => setFilter("created_to", e.currentTarget.value)} />
            <Select label={t("sort")} value={filters.sort ?? "-created_at"} allowDeselect={false} onChange={(v) => setFilter("sort", v === "-created_at" ? null : v)}
                    data={["-created_at", "created_at", "-updated_at", "name", "-name"].map((s) => ({ value: s, label: t(`sort_${s.replace("-", "desc_")}`) }))} />
          </SimpleGrid>
        </Paper>
      )}
      {chosen.length > 0 && (
        <Group data-testid="bulk-bar">
          <Text size="sm" fw={600}>{t("selected", { count: chosen.length })}</Text>
          {can("contacts:write") && <Button size="xs" variant="light" onClick={() => { setBulkValue(""); setBulk("tag"); }} data-testid="bulk-tag">{t("addTag")}</Button>}
          {canAssign && <Button size="xs" variant="light" onClick={() => { setBulkValue(null); setBulk("owner"); }} data-testid="bulk-owner">{t("assignOwner")}</Button>}
          <Button size="xs" variant="light" onClick={exportSelected} data-testid="bulk-export">{t("exportSelected")}</Button>
          <Button size="xs" variant="subtle" onClick={() => setSelected(new Set())}>{t("clearSelection")}</Button>
        </Group>
      )}
      <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
      {hits.length > 0 && (
        <Paper withBorder p="xs" data-testid="search-hits">
          <Text size="xs" c="dimmed" mb={4}>{t("alsoMatching")}</Text>
          {hits.map((hit) => (
            <Group key={hit.id} gap="xs">
              <Anchor component={Link} to={`/contacts/${hit.id}`}>{hit.title}</Anchor>
              {hit.subtitle && <Text size="xs" c="dimmed">{hit.subtitle}</Text>}
            </Group>
          ))}
        </Paper>
      )}
      {!list.isLoading && !contacts.length && !hits.length && !list.error && <Text c="dimmed">{t("noContacts")}</Text>}
      {contacts.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table highlightOnHover data-testid="contacts-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th w={32}><Checkbox aria-label={t("selectAll")} checked={allChosen} indeterminate={chosen.length > 0 && !allChosen}
                  onChange={() => setSelected(allChosen ? new Set() : new Set(contacts.map((c) => c.id!)))} /></Table.Th>
                <Table.Th>{t("name")}</Table.Th><Table.Th>{t("phone")}</Table.Th>
                <Table.Th visibleFrom="sm">{t("email")}</Table.Th><Table.Th visibleFrom="sm">{t("status")}</Table.Th>
                <Table.Th visibleFrom="md">{t("tags")}</Table.Th><Table.Th visibleFrom="md">{t("created")}</Table.Th>
                {customColumns.map((f) => <Table.Th key={f.key} visibleFrom="lg" data-testid={`column-${f.key}`}>{f.label}</Table.Th>)}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              <ContactRows contacts={contacts} selected={selected} customColumns={customColumns} onToggle={toggle} />
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <div ref={sentinel} />
      {list.isFetchingNextPage && <Center><Text c="dimmed">{t("loadingMore")}</Text></Center>}
      <Modal opened={!!bulk} onClose={() => setBulk(null)} title={bulk === "tag" ? t("addTag") : t("assignOwner")}>
        <form onSubmit={(e) => { e.preventDefault(); if (bulk === "tag" ? bulkValue?.trim() : true) runBulk(); }}>
          <Stack>
            {bulk === "tag" ? <TextInput label={t("tag")} required value={bulkValue ?? ""} onChange={(e) => setBulkValue(e.currentTarget.value)}
                                         data-testid="bulk-tag-value" data-autofocus />
              : <Select label={t("owner")} value={bulkValue} onChange={setBulkValue} data={owners} searchable placeholder={t("nobody")} clearable />}
            <Group justify="flex-end">
              <Button variant="default" onClick={() => setBulk(null)}>{t("cancel")}</Button>
              <Button type="submit" loading={busy} data-testid="bulk-apply">{t("apply")}</Button>
            </Group>
          </Stack>
        </form>
      </Modal>
      <Modal opened={naming} onClose={() => setNaming(false)} title={t("saveView")}>
        <form onSubmit={(e) => { e.preventDefault(); if (viewName.trim()) { setViews(saveView(userId, { name: viewName.trim(), query: current })); setNaming(false); } }}>
          <Stack>
            <TextInput label={t("viewName")} required value={viewName} onChange={(e) => setViewName(e.currentTarget.value)} data-testid="view-name" data-autofocus />
            <Text size="xs" c="dimmed">{t("viewsLocal")}</Text>
            <Group justify="flex-end"><Button type="submit" data-testid="view-save">{t("save")}</Button></Group>
          </Stack>
        </form>
      </Modal>
    </Stack>
  );
}

/** The list's rows, kept out of the page's renders: a keystroke in the search box re-renders
 * the page, not these 50+ rows (bench_console: results within 300 ms of the last keystroke). */
const ContactRows = memo(function ContactRows({ contacts, selected, customColumns, onToggle }: {
  contacts: Contact[]; selected: Set<string>; customColumns: CustomField[]; onToggle: (id: string) => void;
}) {
  const { t } = useTranslation();
  const locale = useLocale();
  const showCustom = useShowValue();
  return (
    <>
      {contacts.map((contact) => (
        <Table.Tr key={contact.id} data-testid={`contact-row-${contact.id}`}>
          <Table.Td><Checkbox aria-label={contactName(contact)} checked={selected.has(contact.id!)} onChange={() => onToggle(contact.id!)} /></Table.Td>
          <Table.Td><Anchor component={Link} to={`/contacts/${contact.id}`}>{contactName(contact)}</Anchor>
            {contact.do_not_contact && <Badge ml={4} size="xs" color="red">{t("dncShort")}</Badge>}</Table.Td>
          <Table.Td>{contact.phones?.[0] && (contact.do_not_contact ? contact.phones[0].e164 ?? contact.phones[0].raw
            : <Anchor href={`tel:${contact.phones[0].e164 ?? ""}`}>{contact.phones[0].e164 ?? contact.phones[0].raw}</Anchor>)}</Table.Td>
          <Table.Td visibleFrom="sm">{contact.emails?.[0]?.email}</Table.Td>
          <Table.Td visibleFrom="sm"><Badge variant="light">{t(`status_${contact.status ?? "lead"}`)}</Badge></Table.Td>
          <Table.Td visibleFrom="md">{(contact.tags ?? []).map((tag) => <Badge key={tag} size="xs" variant="outline" mr={2}>{tag}</Badge>)}</Table.Td>
          <Table.Td visibleFrom="md">{locale.date(contact.created_at)}</Table.Td>
          {customColumns.map((f) => <Table.Td key={f.key} visibleFrom="lg">{showCustom(f, (contact.custom as Record<string, unknown> | undefined)?.[f.key!])}</Table.Td>)}
        </Table.Tr>
      ))}
    </>
  );
});
