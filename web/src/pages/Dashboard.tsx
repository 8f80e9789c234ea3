import { useEffect, useMemo, useState } from "react";
import { ActionIcon, Badge, Card, Group, Progress, SegmentedControl, Select, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router-dom";
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { useLocale, usePermissions } from "../lib/me";
import { addTile, loadTiles, moveTile, storeTiles, tileCountQuery, tileLink, type Tile } from "../lib/tiles";
import { loadViews } from "../lib/views";
import { behindPlan, change, lastDays, monthElapsed, monthSeries, salesTotals } from "../lib/periods";

function Delta({ value }: { value: number | null }) {
  const locale = useLocale();
  if (value == null) return null;
  const text = new Intl.NumberFormat(locale.language, { style: "percent", maximumFractionDigits: 0, signDisplay: "exceptZero" }).format(value);
  return <Badge size="sm" variant="light" color={value > 0 ? "green" : value < 0 ? "red" : "gray"}>{text}</Badge>;
}

function Kpi({ label, value, delta, testId, onClick }: { label: string; value: string; delta?: number | null; testId: string; onClick?: () => void }) {
  return (
    <Card withBorder data-testid={testId} onClick={onClick} style={onClick ? { cursor: "pointer" } : undefined}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={700}>{label}</Text>
      <Group justify="space-between" align="flex-end" mt={4}>
        <Text fz={26} fw={700}>{value}</Text>
        {delta !== undefined && <Delta value={delta} />}
      </Group>
    </Card>
  );
}

function TileCard({ tile, index, count, onMove, onRemove }: { tile: Tile; index: number; count: number;
  onMove: (index: number, by: number) => void; onRemove: (index: number) => void }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const total = useQuery({
    queryKey: ["contacts", "tile", tile.query, locale.timeZone],
    queryFn: async () => ok(await api.GET("/api/v1/contacts", { params: { query: tileCountQuery(tile, locale.timeZone) } })).total ?? 0,
  });
  return (
    <Card withBorder data-testid={`tile-${tile.name}`}>
      <Group justify="space-between" wrap="nowrap">
        <Text size="xs" c="dimmed" tt="uppercase" fw={700} truncate>{tile.name}</Text>
        <Group gap={2} wrap="nowrap">
          <ActionIcon size="xs" variant="subtle" aria-label={t("moveEarlier")} disabled={index === 0} onClick={() => onMove(index, -1)}>‹</ActionIcon>
          <ActionIcon size="xs" variant="subtle" aria-label={t("moveLater")} disabled={index === count - 1} onClick={() => onMove(index, 1)}>›</ActionIcon>
          <ActionIcon size="xs" variant="subtle" color="red" aria-label={t("remove")} onClick={() => onRemove(index)}>×</ActionIcon>
        </Group>
      </Group>
      <Text fz={26} fw={700} mt={4} style={{ cursor: "pointer" }} onClick={() => navigate(tileLink(tile))} data-testid="tile-count">
        {total.data == null ? "…" : locale.number(total.data)}
      </Text>
    </Card>
  );
}

/** The user's own tiles: saved contact views as counts that open the list with that filter,
 * arranged by the user. */
function MyTiles() {
  const { t } = useTranslation();
  const { me } = usePermissions();
  const userId = me?.id ?? "";
  const [tiles, setTiles] = useState<Tile[]>([]);
  useEffect(() => { if (userId) setTiles(loadTiles(userId)); }, [userId]);
  const views = userId ? loadViews(userId) : [];
  const update = (next: Tile[]) => setTiles(storeTiles(userId, next));
  if (!userId) return null;
  const current = tiles;
  return (
    <Stack gap="xs" data-testid="my-tiles">
      <Group justify="space-between">
        <Title order={4}>{t("myTiles")}</Title>
        <Select size="xs" w={220} placeholder={t("addTile")} value={null} data-testid="add-tile"
                data={views.map((v) => ({ value: v.name, label: v.name }))} nothingFoundMessage={t("noSavedViews")}
                onChange={(name) => { const view = views.find((v) => v.name === name); if (view) update(addTile(current, view)); }} />
      </Group>
      {current.length > 0 && (
        <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
          {current.map((tile, i) => (
            <TileCard key={tile.id} tile={tile} index={i} count={current.length}
                      onMove={(index, by) => update(moveTile(current, index, by))}
                      onRemove={(index) => update(current.filter((_, j) => j !== index))} />
          ))}
        </SimpleGrid>
      )}
    </Stack>
  );
}

/** The plan of the month per person ("5 of 10 won", behind plan flagged) and the overdue
 * tasks per person, each opening the records behind it. What a role sees follows its
 * visibility: an agent their own, a manager their team, an admin everyone. */
function PlanAndTeam() {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const { me } = usePermissions();
  const today = locale.today();
  const month = today.slice(0, 7);
  const progress = useQuery({ queryKey: ["targets", "progress", month], queryFn: async () =>
    ok(await api.GET("/api/v1/targets/progress", { params: { query: { period: month } } })).items ?? [] });
  const tasks = useQuery({ queryKey: ["reports", "tasks-by-assignee"], queryFn: async () =>
    ok(await api.GET("/api/v1/reports/tasks", { params: { query: { group_by: "assignee" } } })).items ?? [] });
  const users = useQuery({ queryKey: ["users", "active"], queryFn: async () =>
    ok(await api.GET("/api/v1/users", { params: { query: { limit: 200, active: true } } })).items ?? [] });
  const name = (id?: string | null) => users.data?.find((u) => u.id === id)?.name ?? id ?? "—";
  const elapsed = monthElapsed(today);
  const overdue = (tasks.data ?? []).filter((r) => (r.overdue ?? 0) > 0).sort((a, b) => (b.overdue ?? 0) - (a.overdue ?? 0));
  const mine = me?.role === "agent";
  return (
    <SimpleGrid cols={{ base: 1, md: 2 }}>
      <Card withBorder data-testid="plan">
        <Title order={4} mb="sm">{t(mine ? "myPlan" : "teamPlan")} · {month}</Title>
        <QueryState loading={progress.isLoading} error={progress.error} retry={() => progress.refetch()} />
        {progress.data?.length === 0 && <Text c="dimmed" size="sm">{t("noTargets")}</Text>}
        <Stack gap="xs">
          {(progress.data ?? []).map((p) => {
            const percent = p.amount_percent ?? p.count_percent ?? null;
            const behind = behindPlan(percent, elapsed);
            const who = p.target?.user_id ? name(p.target.user_id) : p.target?.team ?? "—";
            return (
              <div key={p.target?.id} data-testid={`plan-${p.target?.user_id ?? p.target?.team}`} style={{ cursor: "pointer" }}
                   onClick={() => p.target?.user_id && navigate(`/deals?owner_id=${p.target.user_id}`)}>
                <Group justify="space-between" gap="xs">
                  <Text size="sm" fw={600}>{who}</Text>
                  <Group gap={6}>
                    <Text size="sm">{p.summary}</Text>
                    {behind && <Badge color="red" variant="light" size="sm" data-testid="behind-plan">{t("behindPlan")}</Badge>}
                  </Group>
                </Group>
                <Progress value={Math.min(100, percent ?? 0)} color={behind ? "red" : "teal"} size="sm" mt={4} />
              </div>
            );
          })}
        </Stack>
      </Card>
      <Card withBorder data-testid="overdue-by-person">
        <Title order={4} mb="sm">{t("overdueByPerson")}</Title>
        {!tasks.isLoading && overdue.length === 0 && <Text c="dimmed" size="sm">{t("nothingOverdue")}</Text>}
        <Table>
          <Table.Tbody>
            {overdue.map((r) => (
              <Table.Tr key={r.assignee_id ?? "none"} style={{ cursor: "pointer" }} data-testid={`overdue-${r.assignee_id}`}
                        onClick={() => navigate(`/tasks?overdue=1${r.assignee_id ? `&assignee_id=${r.assignee_id}` : ""}`)}>
                <Table.Td>{name(r.assignee_id)}</Table.Td>
                <Table.Td><Badge color="red" variant="light">{locale.number(r.overdue)}</Badge></Table.Td>
                <Table.Td><Text size="sm" c="dimmed">{t("openTasksCount", { count: r.open ?? 0 })}</Text></Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Card>
    </SimpleGrid>
  );
}

/** The numbers of the period against the period before, from the report endpoints; a funnel
 * bar opens its stage on the deals board, the missed calls open the call log. */
export function Dashboard() {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const [days, setDays] = useState("30");
  const period = useMemo(() => lastDays(locale.today(), Number(days), locale.timeZone), [days, locale]);
  const report = <T,>(key: string, fn: () => Promise<T>) => ({ queryKey: ["reports", key, period], queryFn: fn });
  const sales = useQuery(report("sales", async () => ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: period.from, to: period.to, group_by: "owner" } } }))));
  const salesBefore = useQuery(report("sales-before", async () => ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: period.previousFrom, to: period.previousTo, group_by: "owner" } } }))));
  const months = useQuery(report("sales-months", async () => ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: lastDays(locale.today(), 365, locale.timeZone).from, to: period.to, group_by: "month" } } }))));
  const funnel = useQuery(report("funnel", async () => ok(await api.GET("/api/v1/reports/funnel", { params: { query: { from: period.from, to: period.to } } }))));
  const calls = useQuery(report("calls", async () => ok(await api.GET("/api/v1/reports/calls", { params: { query: { from: period.from, to: period.to, group_by: "day" } } }))));
  const callsBefore = useQuery(report("calls-before", async () => ok(await api.GET("/api/v1/reports/calls", { params: { query: { from: period.previousFrom, to: period.previousTo, group_by: "day" } } }))));
  const forecast = useQuery(report("forecast", async () => ok(await api.GET("/api/v1/reports/forecast", { params: { query: {} } }))));

  const now = salesTotals(sales.data?.rows), before = salesTotals(salesBefore.data?.rows);
  const currency = now.amounts[0]?.currency ?? before.amounts[0]?.currency ?? "EUR";
  const amount = (totals: typeof now) => totals.amounts.find((a) => a.currency === currency)?.amount ?? 0;
  const percent = (v: number | null) => v == null ? "—" : new Intl.NumberFormat(locale.language, { style: "percent", maximumFractionDigits: 0 }).format(v);
  const funnelData = (funnel.data?.stages ?? []).map((s) => ({ id: s.stage_id, name: s.name ?? "", entered: s.entered ?? 0, won: s.won ?? 0 }));
  const callsData = (calls.data?.rows ?? []).map((r) => ({ day: r.key ?? "", answered: r.answered ?? 0, missed: r.missed ?? 0 }));
  const monthData = monthSeries(months.data?.rows, currency).map((p) => ({ ...p, amount: p.amount / 100 }));
  const errors = [sales, funnel, calls].find((q) => q.error);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("dashboard")}</Title>
        <SegmentedControl value={days} onChange={setDays} data-testid="dashboard-period"
                          data={["7", "30", "90"].map((d) => ({ value: d, label: t("lastDays", { count: Number(d) }) }))} />
      </Group>
      <PlanAndTeam />
      <MyTiles />
      <QueryState loading={sales.isLoading} error={errors?.error ?? null} retry={() => { sales.refetch(); funnel.refetch(); calls.refetch(); }} />
      <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
        <Kpi testId="kpi-won" label={t("wonDeals")} value={locale.number(now.won)} delta={change(now.won, before.won)} />
        <Kpi testId="kpi-revenue" label={t("revenue")} value={locale.money(amount(now), currency) || "—"} delta={change(amount(now), amount(before))} />
        <Kpi testId="kpi-winrate" label={t("winRate")} value={percent(now.winRate)} />
        <Kpi testId="kpi-missed" label={t("missedNotCalledBack")} value={locale.number(calls.data?.missed_not_called_back ?? 0)}
             delta={change(calls.data?.totals?.missed, callsBefore.data?.totals?.missed)} onClick={() => navigate("/calls?missed=1")} />
      </SimpleGrid>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder data-testid="chart-funnel">
          <Title order={4} mb="sm">{t("funnel")}</Title>
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={funnelData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" fontSize={12} reversed={document.documentElement.dir === "rtl"} />
              <YAxis allowDecimals={false} fontSize={12} orientation={document.documentElement.dir === "rtl" ? "right" : "left"} />
              <Tooltip /><Legend />
              <Bar dataKey="entered" name={t("entered")} fill="#228be6" cursor="pointer"
                   onClick={(bar: { id?: string }) => bar.id && navigate(`/deals?pipeline_id=${funnel.data?.pipeline_id ?? ""}&stage_id=${bar.id}`)} />
              <Bar dataKey="won" name={t("stageKind_won")} fill="#40c057" />
            </BarChart>
          </ResponsiveContainer>
          <Group gap={6} mt="xs">
            {funnelData.map((s) => (
              <Badge key={s.id} variant="outline" style={{ cursor: "pointer" }} data-testid={`funnel-${s.id}`}
                     onClick={() => navigate(`/deals?pipeline_id=${funnel.data?.pipeline_id ?? ""}&stage_id=${s.id}`)}>
                {s.name}: {s.entered}
              </Badge>
            ))}
          </Group>
        </Card>
        <Card withBorder data-testid="chart-revenue">
          <Title order={4} mb="sm">{t("revenueByMonth")} ({currency})</Title>
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={monthData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="month" fontSize={12} reversed={document.documentElement.dir === "rtl"} />
              <YAxis fontSize={12} orientation={document.documentElement.dir === "rtl" ? "right" : "left"}
                     tickFormatter={(v: number) => locale.number(v)} />
              <Tooltip formatter={(v: number) => locale.money(Math.round(v * 100), currency)} />
              <Bar dataKey="amount" name={t("revenue")} fill="#7950f2" />
            </BarChart>
          </ResponsiveContainer>
        </Card>
        <Card withBorder data-testid="chart-calls">
          <Title order={4} mb="sm">{t("callsByDay")}</Title>
          <ResponsiveContainer width="100%" height={240}>
            <BarChart data={callsData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" fontSize={11} reversed={document.documentElement.dir === "rtl"} />
              <YAxis allowDecimals={false} fontSize={12} orientation={document.documentElement.dir === "rtl" ? "right" : "left"} />
              <Tooltip /><Legend />
              <Bar dataKey="answered" stackId="c" name={t("outcome_answered")} fill="#40c057" />
              <Bar dataKey="missed" stackId="c" name={t("missed")} fill="#fa5252" />
            </BarChart>
          </ResponsiveContainer>
        </Card>
        <Card withBorder data-testid="forecast">
          <Title order={4} mb="sm">{t("forecast")}</Title>
          <Table>
            <Table.Thead><Table.Tr><Table.Th>{t("month")}</Table.Th><Table.Th>{t("openDeals")}</Table.Th>
              <Table.Th>{t("amount")}</Table.Th><Table.Th>{t("weighted")}</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {(forecast.data?.rows ?? []).slice(0, 8).map((r) => (
                <Table.Tr key={`${r.month}-${r.currency}`}>
                  <Table.Td>{r.month ?? t("noDate")}</Table.Td><Table.Td>{locale.number(r.open_count)}</Table.Td>
                  <Table.Td>{locale.money(r.open_amount, r.currency)}</Table.Td><Table.Td>{locale.money(r.weighted_amount, r.currency)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
          {forecast.data?.rows?.length === 0 && <Text c="dimmed" size="sm">{t("nothingHere")}</Text>}
        </Card>
      </SimpleGrid>
    </Stack>
  );
}
