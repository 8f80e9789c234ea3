import { useState } from "react";
import { Alert, Anchor, Badge, Button, Card, Grid, Group, NumberInput, Select, Stack, Switch, Table, Tabs, Text, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors, flatFieldErrors } from "../components/TaskDialogs";
import { useLocale, usePermissions } from "../lib/me";
import { monthOf, setCost, toMinor, type Cost } from "../lib/settings";

type Source = Schemas["LeadSourceOut"];
type Currency = Schemas["LeadSourceCost"]["currency"];
const CURRENCIES = ["EUR", "USD", "GBP", "CHF", "ILS", "RUB"];

function formError(errors: Record<string, string>) {
  const text = errors._ ?? errors._schema;
  return text ? <Alert color="red">{text}</Alert> : null;
}

/** One source's monthly costs: add or change a month, remove one; saved whole (PATCH costs). */
function Costs({ source, writable }: { source: Source; writable: boolean }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const [period, setPeriod] = useState(monthOf(new Date()));
  const [currency, setCurrency] = useState("EUR");
  const [amount, setAmount] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const save = useMutation({
    mutationFn: async (costs: Cost[]) => ok(await api.PATCH("/api/v1/lead-sources/{source_id}", {
      params: { path: { source_id: source.id! } }, body: { costs: costs as Schemas["LeadSourceCost"][] } })),
    onSuccess: () => { setAmount(""); setErrors({}); },
    onError: (error) => setErrors(flatFieldErrors(error)),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["lead-sources"] }),
  });
  const costs = (source.costs ?? []) as Cost[];
  const add = () => {
    const minor = toMinor(amount);
    if (minor == null) { setErrors({ amount: t("lsBadAmount") }); return; }
    save.mutate(setCost(costs, period.trim(), currency, minor));
  };
  // the API names a bad entry by its index: shown on the add row
  const rowError = Object.entries(errors).find(([k]) => k.startsWith("costs"))?.[1];
  return (
    <Stack gap="xs" data-testid="ls-costs">
      <Text fw={500} size="sm">{t("lsCosts")} · {source.name}</Text>
      {!costs.length && <Text size="sm" c="dimmed">{t("lsNoCosts")}</Text>}
      {!!costs.length && (
        <Table fz="sm" data-testid="ls-costs-table">
          <Table.Tbody>
            {costs.map((c) => (
              <Table.Tr key={`${c.period}-${c.currency}`}>
                <Table.Td>{c.period}</Table.Td><Table.Td>{locale.money(c.amount, c.currency)}</Table.Td>
                <Table.Td>{writable && <Button size="compact-xs" variant="subtle" color="red"
                                                onClick={() => save.mutate(setCost(costs, c.period, c.currency, null))}>{t("remove")}</Button>}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      {writable && (
        <form onSubmit={(e) => { e.preventDefault(); add(); }}>
          <Group align="flex-start" gap="xs" wrap="wrap">
            <TextInput label={t("month")} placeholder="2026-12" w={110} value={period} error={rowError}
                       onChange={(e) => setPeriod(e.currentTarget.value)} data-testid="ls-cost-month" />
            <Select label={t("currency")} w={90} value={currency} allowDeselect={false} data={CURRENCIES} onChange={(v) => v && setCurrency(v)} />
            <TextInput label={t("amount")} w={120} value={amount} error={errors.amount} inputMode="decimal"
                       onChange={(e) => setAmount(e.currentTarget.value)} data-testid="ls-cost-amount" />
            <Button type="submit" mt={25} loading={save.isPending} data-testid="ls-cost-add">{t("lsSetCost")}</Button>
          </Group>
          {formError(errors)}
        </form>
      )}
    </Stack>
  );
}

function LeadSources() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const writable = can("lead-sources:write");
  const [chosen, setChosen] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const sources = useQuery({
    queryKey: ["lead-sources"],
    queryFn: async () => ok(await api.GET("/api/v1/lead-sources", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["lead-sources"] });
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/lead-sources", { body: { name: name.trim() } })),
    onSuccess: (s) => { setName(""); setErrors({}); setChosen(s.id!); },
    onError: (error) => setErrors(fieldErrors(error)),
    onSettled: refresh,
  });
  const toggle = useMutation({
    mutationFn: async ({ id, active }: { id: string; active: boolean }) => ok(await api.PATCH("/api/v1/lead-sources/{source_id}", {
      params: { path: { source_id: id } }, body: { active } })),
    onSettled: refresh,
  });
  const source = sources.data?.find((s) => s.id === chosen);
  return (
    <Grid>
      <Grid.Col span={{ base: 12, md: 6 }}>
        <Stack>
          {writable && (
            <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }}>
              <Group align="flex-start" gap="xs">
                <TextInput placeholder={t("lsNewName")} aria-label={t("lsNewName")} value={name} error={errors.name} style={{ flex: 1 }}
                           onChange={(e) => setName(e.currentTarget.value)} data-testid="ls-name" />
                <Button type="submit" disabled={!name.trim()} loading={create.isPending} data-testid="ls-create">{t("add")}</Button>
              </Group>
              {formError(errors)}
            </form>
          )}
          <QueryState loading={sources.isLoading} error={sources.error} retry={() => sources.refetch()} />
          {(sources.data ?? []).map((s) => (
            <Card key={s.id} withBorder padding="xs" data-testid={`ls-${s.name}`}
                  style={s.id === chosen ? { outline: "2px solid var(--mantine-color-blue-filled)" } : undefined}>
              <Group justify="space-between" wrap="nowrap">
                <Anchor component="button" type="button" onClick={() => setChosen(s.id!)} data-testid="ls-open"
                        style={{ wordBreak: "break-word", textAlign: "start", minWidth: 0 }}>{s.name}</Anchor>
                <Group gap="xs" wrap="nowrap">
                  {s.auto_registered && <Badge size="xs" variant="outline">{t("lsAuto")}</Badge>}
                  <Text size="xs" c="dimmed">{t("lsMonths", { count: s.costs?.length ?? 0 })}</Text>
                  <Switch size="xs" checked={s.active !== false} disabled={!writable} aria-label={t("active")}
                          onChange={(e) => toggle.mutate({ id: s.id!, active: e.currentTarget.checked })} />
                </Group>
              </Group>
            </Card>
          ))}
        </Stack>
      </Grid.Col>
      <Grid.Col span={{ base: 12, md: 6 }}>
        {source ? <Card withBorder><Costs key={source.id} source={source} writable={writable} /></Card> : <Text c="dimmed">{t("lsChoose")}</Text>}
      </Grid.Col>
    </Grid>
  );
}

function Targets() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const writable = can("targets:write");
  const [period, setPeriod] = useState(monthOf(new Date()));
  const users = useQuery({
    queryKey: ["users"],
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const targets = useQuery({
    queryKey: ["targets", period],
    enabled: /^\d{4}-(\d{2}|Q[1-4])$/.test(period),
    queryFn: async () => ok(await api.GET("/api/v1/targets", { params: { query: { period, limit: 200 } } })).items ?? [],
  });
  const empty = { who: "", deals: "" as string | number, amount: "", currency: "EUR" };
  const [draft, setDraft] = useState(empty);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["targets"] });
  const teams = [...new Set((users.data ?? []).map((u) => u.team).filter(Boolean) as string[])].sort();
  const create = useMutation({
    mutationFn: async () => {
      const [kind, value] = draft.who.split(":", 2);
      const amount = draft.amount.trim() ? toMinor(draft.amount) : null;
      if (draft.amount.trim() && amount == null) throw Object.assign(new Error(t("lsBadAmount")), { local: "amount" });
      const members = (users.data ?? []).filter((u) => u.team === value && u.active !== false).map((u) => u.id!);
      return ok(await api.POST("/api/v1/targets", { body: {
        period, ...(kind === "team" ? { team: value, member_ids: members } : { user_id: value }),
        ...(draft.deals !== "" ? { deals_count: Number(draft.deals) } : {}),
        ...(amount ? { amount, currency: draft.currency as Currency } : {}) } }));
    },
    onSuccess: () => { setDraft(empty); setErrors({}); },
    onError: (error) => setErrors((error as { local?: string }).local ? { amount: (error as Error).message } : fieldErrors(error)),
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/targets/{target_id}", { params: { path: { target_id: id } } })),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: refresh,
  });
  const userName = (id?: string | null) => (users.data ?? []).find((u) => u.id === id)?.name ?? id ?? "";
  return (
    <Stack>
      <Group align="flex-end">
        <TextInput label={t("tgPeriod")} description={t("tgPeriodHint")} w={160} value={period}
                   onChange={(e) => setPeriod(e.currentTarget.value.trim())} data-testid="tg-period" />
      </Group>
      {writable && (
        <Card withBorder>
          <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="target-new">
            <Group align="flex-start" gap="xs" wrap="wrap">
              <Select label={t("tgWho")} required searchable w={200} value={draft.who || null} error={errors.user_id ?? errors.team ?? errors.member_ids}
                      data={[{ group: t("users"), items: (users.data ?? []).filter((u) => u.active !== false).map((u) => ({ value: `user:${u.id}`, label: u.name ? `${u.name} (${u.email})` : u.email ?? "" })) },
                             { group: t("tgTeams"), items: teams.map((team) => ({ value: `team:${team}`, label: team })) }]}
                      onChange={(v) => setDraft({ ...draft, who: v ?? "" })} data-testid="tg-who" />
              <NumberInput label={t("tgDeals")} w={110} min={1} value={draft.deals} error={errors.deals_count}
                           onChange={(v) => setDraft({ ...draft, deals: v })} data-testid="tg-deals" />
              <TextInput label={t("amount")} w={120} inputMode="decimal" value={draft.amount} error={errors.amount}
                         onChange={(e) => setDraft({ ...draft, amount: e.currentTarget.value })} data-testid="tg-amount" />
              <Select label={t("currency")} w={90} value={draft.currency} allowDeselect={false} data={CURRENCIES} error={errors.currency}
                      onChange={(v) => v && setDraft({ ...draft, currency: v })} />
              <Button type="submit" mt={25} disabled={!draft.who} loading={create.isPending} data-testid="tg-create">{t("add")}</Button>
            </Group>
            {formError({ ...errors, _: errors._ ?? errors.period })}
          </form>
        </Card>
      )}
      <QueryState loading={targets.isLoading} error={targets.error} retry={() => targets.refetch()} />
      {targets.data && !targets.data.length && <Text c="dimmed">{t("tgNone")}</Text>}
      {!!targets.data?.length && (
        <Table.ScrollContainer minWidth={320}>
          <Table data-testid="targets-table">
            <Table.Thead><Table.Tr><Table.Th>{t("tgWho")}</Table.Th><Table.Th>{t("tgDeals")}</Table.Th><Table.Th>{t("amount")}</Table.Th><Table.Th /></Table.Tr></Table.Thead>
            <Table.Tbody>
              {targets.data.map((g) => (
                <Table.Tr key={g.id} data-testid={`target-${g.id}`}>
                  <Table.Td>{g.team ? <><Badge size="xs" variant="outline" me={4}>{t("team")}</Badge>{g.team}</> : userName(g.user_id)}</Table.Td>
                  <Table.Td>{g.deals_count ?? "—"}</Table.Td>
                  <Table.Td>{g.amount ? locale.money(g.amount, g.currency) : "—"}</Table.Td>
                  <Table.Td>{writable && <Button size="compact-xs" variant="subtle" color="red" onClick={() => remove.mutate(g.id!)}
                                                 data-testid="tg-delete">{t("remove")}</Button>}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}

/** Settings → Lead sources and targets: each source's monthly costs (for the cost per lead
 * in the sources report) and the sales targets of a month or quarter. */
export function SalesSettings() {
  const { t } = useTranslation();
  const { can, loaded } = usePermissions();
  const first = can("lead-sources:read") ? "sources" : "targets";
  if (!loaded) return null;  // the first tab depends on the role
  return (
    <Stack>
      <Title order={2}>{t("sourcesAndTargets")}</Title>
      <Tabs defaultValue={first} keepMounted={false}>
        <Tabs.List>
          {can("lead-sources:read") && <Tabs.Tab value="sources">{t("leadSources")}</Tabs.Tab>}
          {can("targets:read") && <Tabs.Tab value="targets" data-testid="tab-targets">{t("salesTargets")}</Tabs.Tab>}
        </Tabs.List>
        {can("lead-sources:read") && <Tabs.Panel value="sources" pt="md"><LeadSources /></Tabs.Panel>}
        {can("targets:read") && <Tabs.Panel value="targets" pt="md"><Targets /></Tabs.Panel>}
      </Tabs>
    </Stack>
  );
}
