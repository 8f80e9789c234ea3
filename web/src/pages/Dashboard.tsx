import { useEffect, useMemo, useState } from "react";
import { ActionIcon, Badge, Card, Group, Progress, SegmentedControl, Select, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router-dom";
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api, ok } from "../api/client";
import { Delta } from "../components/Delta";
import { QueryState } from "../components/QueryState";
import { useLocale, usePermissions } from "../lib/me";
import { addMyDay, addTile, loadTiles, moveTile, storeTiles, tileCountQuery, tileLink, type Tile } from "../lib/tiles";
import { buildAgenda } from "../lib/agenda";
import { loadViews } from "../lib/views";
import { behindPlan, dealsLink, forecastDealsLink, monthBounds, monthElapsed, monthSeries, pairByKey, periodOf, salesTotals,
         shiftMonth, trend, withPrevious, wonDealsLink, type Trend } from "../lib/periods";

function Kpi({ label, value, previous, delta, format, testId, onClick }: { label: string; value: string; previous?: string;
  delta?: Trend | null; format?: (diff: number) => string; testId: string; onClick?: () => void }) {
  const { t } = useTranslation();
  return (
    <Card withBorder data-testid={testId} onClick={onClick} style={onClick ? { cursor: "pointer" } : undefined}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={700}>{label}</Text>
      <Group justify="space-between" align="flex-end" mt={4} wrap="nowrap">
        <Text fz={26} fw={700} data-testid="kpi-value">{value}</Text>
        {delta !== undefined && <Delta value={delta} previous={previous} format={format} />}
      </Group>
      {previous != null && <Text size="xs" c="dimmed" data-testid="previous">{t("inPreviousPeriod", { value: previous })}</Text>}
    </Card>
  );
}

/** A tile's frame: its name, move and remove. */
function TileFrame({ name, index, count, onMove, onRemove, testId, children }: { name: string; index: number; count: number;
  onMove: (index: number, by: number) => void; onRemove: (index: number) => void; testId: string; children: React.ReactNode }) {
  const { t } = useTranslation();
  return (
    <Card withBorder data-testid={testId}>
      <Group justify="space-between" wrap="nowrap">
        <Text size="xs" c="dimmed" tt="uppercase" fw={700} truncate>{name}</Text>
        <Group gap={2} wrap="nowrap">
          <ActionIcon size="xs" variant="subtle" aria-label={t("moveEarlier")} disabled={index === 0} onClick={() => onMove(index, -1)}>‹</ActionIcon>
          <ActionIcon size="xs" variant="subtle" aria-label={t("moveLater")} disabled={index === count - 1} onClick={() => onMove(index, 1)}>›</ActionIcon>
          <ActionIcon size="xs" variant="subtle" color="red" aria-label={t("remove")} onClick={() => onRemove(index)}>×</ActionIcon>
        </Group>
      </Group>
      {children}
    </Card>
  );
}

type TileProps = { tile: Tile; index: number; count: number; onMove: (index: number, by: number) => void; onRemove: (index: number) => void };

/** What the Today page shows, as counts: overdue, due today, meetings today, calls to return. */
function MyDayTile(props: TileProps) {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const { can } = usePermissions();
  const agenda = useQuery({ queryKey: ["tasks", "agenda"], queryFn: async () =>
    ok(await api.GET("/api/v1/agenda", { params: { query: { limit: 100 } } })) });
  const missed = useQuery({ queryKey: ["calls", "missed"], enabled: can("calls:read"), queryFn: async () =>
    ok(await api.GET("/api/v1/calls", { params: { query: { missed: true, called_back: false, limit: 50 } } })).items ?? [] });
  const day = buildAgenda(agenda.data, missed.data);
  const figures = [["overdue", day.overdue.length, "red"], ["dueToday", day.today.length, "blue"],
                   ["meetingsToday", day.today.filter((task) => task.kind === "meeting").length, "teal"],
                   ...(can("calls:read") ? [["callsToReturn", day.missedCalls.length, "grape"]] : [])] as [string, number, string][];
  return (
    <TileFrame {...props} name={t("myDay")} testId="tile-myday">
      <SimpleGrid cols={2} spacing={4} mt={4} style={{ cursor: "pointer" }} onClick={() => navigate(tileLink(props.tile))}>
        {figures.map(([key, value, color]) => (
          <div key={key} data-testid={`myday-${key}`}>
            <Text fz={20} fw={700} c={value ? color : undefined}>{agenda.data ? locale.number(value) : "…"}</Text>
            <Text size="xs" c="dimmed" lh={1.1}>{t(key)}</Text>
          </div>
        ))}
      </SimpleGrid>
    </TileFrame>
  );
}

function TileCard(props: TileProps) {
  const { tile } = props;
  const locale = useLocale();
  const navigate = useNavigate();
  const total = useQuery({
    queryKey: ["contacts", "tile", tile.query, locale.timeZone],
    queryFn: async () => ok(await api.GET("/api/v1/contacts", { params: { query: tileCountQuery(tile, locale.timeZone) } })).total ?? 0,
  });
  return (
    <TileFrame {...props} name={tile.name} testId={`tile-${tile.name}`}>
      <Text fz={26} fw={700} mt={4} style={{ cursor: "pointer" }} onClick={() => navigate(tileLink(tile))} data-testid="tile-count">
        {total.data == null ? "…" : locale.number(total.data)}
      </Text>
    </TileFrame>
  );
}

/** The user's own tiles: saved contact views as counts that open the list with that filter,
 * and "my day", arranged by the user. */
const MY_DAY_CHOICE = "myday";

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
                data={[...(current.some((tile) => tile.list === "myday") ? [] : [{ value: MY_DAY_CHOICE, label: t("addMyDay") }]),
                       ...views.map((v) => ({ value: `view:${v.name}`, label: v.name }))]}
                nothingFoundMessage={t("noSavedViews")}
                onChange={(choice) => {
                  if (choice === MY_DAY_CHOICE) { update(addMyDay(current)); return; }
                  const view = views.find((v) => `view:${v.name}` === choice); if (view) update(addTile(current, view)); }} />
      </Group>
      {current.length > 0 && (
        <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
          {current.map((tile, i) => (
            tile.list === "myday"
              ? <MyDayTile key={tile.id} tile={tile} index={i} count={current.length}
                           onMove={(index, by) => update(moveTile(current, index, by))}
                           onRemove={(index) => update(current.filter((_, j) => j !== index))} />
              : <TileCard key={tile.id} tile={tile} index={i} count={current.length}
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
  const lastMonth = shiftMonth(month, -1);
  const progressBefore = useQuery({ queryKey: ["targets", "progress", lastMonth], queryFn: async () =>
    ok(await api.GET("/api/v1/targets/progress", { params: { query: { period: lastMonth } } })).items ?? [] });
  const percentText = (v: number) => new Intl.NumberFormat(locale.language, { style: "percent", maximumFractionDigits: 0 }).format(v / 100);
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
            const earlier = (progressBefore.data ?? []).find((b) => (b.target?.user_id ?? null) === (p.target?.user_id ?? null)
                                                                && (b.target?.team ?? null) === (p.target?.team ?? null));
            const percentBefore = earlier ? earlier.amount_percent ?? earlier.count_percent ?? null : null;
            return (
              <div key={p.target?.id} data-testid={`plan-${p.target?.user_id ?? p.target?.team}`} style={{ cursor: "pointer" }}
                   onClick={() => p.target?.user_id && navigate(`/deals?owner_id=${p.target.user_id}`)}>
                <Group justify="space-between" gap="xs">
                  <Text size="sm" fw={600}>{who}</Text>
                  <Group gap={6}>
                    <Text size="sm">{p.summary}</Text>
                    {percentBefore != null && <Text size="xs" c="dimmed" data-testid="plan-last-month">{t("planLastMonth", { value: percentText(percentBefore) })}</Text>}
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

/** The numbers of the period against the period before (the same report asked again
 * for the previous period: a delta on each number, a grey bar beside each bar); a bar or
 * a row opens the records behind it (the deals list with that filter, the call log). */
export function Dashboard() {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const [choice, setChoice] = useState("30");
  const period = useMemo(() => periodOf(choice, locale.today(), locale.timeZone), [choice, locale]);
  // revenue by month: the last 12 UTC months (as the sales report groups them), against the same months a year before
  const thisMonthKey = locale.today().slice(0, 7);
  const months = useMemo(() => ({ from: monthBounds(shiftMonth(thisMonthKey, -11)).from, to: monthBounds(thisMonthKey).to,
                                  previousFrom: monthBounds(shiftMonth(thisMonthKey, -23)).from, previousTo: monthBounds(shiftMonth(thisMonthKey, -12)).to }),
                        [thisMonthKey]);
  const report = <T,>(key: string, fn: () => Promise<T>) => ({ queryKey: ["reports", key, period], queryFn: fn });
  const sales = useQuery(report("sales", async () => ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: period.from, to: period.to, group_by: "owner" } } }))));
  const salesBefore = useQuery(report("sales-before", async () => ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: period.previousFrom, to: period.previousTo, group_by: "owner" } } }))));
  const byMonth = useQuery({ queryKey: ["reports", "sales-months", months], queryFn: async () =>
    ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: months.from, to: months.to, group_by: "month" } } })) });
  const byMonthBefore = useQuery({ queryKey: ["reports", "sales-months-before", months], queryFn: async () =>
    ok(await api.GET("/api/v1/reports/sales", { params: { query: { from: months.previousFrom, to: months.previousTo, group_by: "month" } } })) });
  const funnel = useQuery(report("funnel", async () => ok(await api.GET("/api/v1/reports/funnel", { params: { query: { from: period.from, to: period.to } } }))));
  const funnelBefore = useQuery(report("funnel-before", async () => ok(await api.GET("/api/v1/reports/funnel", { params: { query: { from: period.previousFrom, to: period.previousTo } } }))));
  const calls = useQuery(report("calls", async () => ok(await api.GET("/api/v1/reports/calls", { params: { query: { from: period.from, to: period.to, group_by: "day" } } }))));
  const callsBefore = useQuery(report("calls-before", async () => ok(await api.GET("/api/v1/reports/calls", { params: { query: { from: period.previousFrom, to: period.previousTo, group_by: "day" } } }))));
  const forecast = useQuery(report("forecast", async () => ok(await api.GET("/api/v1/reports/forecast", { params: { query: {} } }))));
  const users = useQuery({ queryKey: ["users", "active"], queryFn: async () =>
    ok(await api.GET("/api/v1/users", { params: { query: { limit: 200, active: true } } })).items ?? [] });
  const name = (id?: string | null) => users.data?.find((u) => u.id === id)?.name ?? id ?? "—";

  const now = salesTotals(sales.data?.rows), before = salesTotals(salesBefore.data?.rows);
  const currency = now.amounts[0]?.currency ?? before.amounts[0]?.currency ?? "EUR";
  const amount = (totals: typeof now) => totals.amounts.find((a) => a.currency === currency)?.amount ?? 0;
  const percent = (v: number | null) => v == null ? "—" : new Intl.NumberFormat(locale.language, { style: "percent", maximumFractionDigits: 0 }).format(v);
  const rtl = document.documentElement.dir === "rtl";
  const enteredBefore = new Map((funnelBefore.data?.stages ?? []).map((s) => [s.stage_id, s.entered ?? 0]));
  const funnelData = (funnel.data?.stages ?? []).map((s) => ({ id: s.stage_id, name: s.name ?? "", entered: s.entered ?? 0, won: s.won ?? 0,
                                                               previous: enteredBefore.get(s.stage_id) ?? 0 }));
  const callRows = (rows?: { key?: string | null; answered?: number; missed?: number }[]) =>
    (rows ?? []).map((r) => ({ day: r.key ?? "", answered: r.answered ?? 0, missed: r.missed ?? 0 }));
  const callsData = withPrevious(callRows(calls.data?.rows), callRows(callsBefore.data?.rows), (r) => r.answered + r.missed);
  const wonIn = (row: { amounts?: { currency?: string; won_amount?: number }[] } | undefined) =>
    (row?.amounts ?? []).find((a) => a.currency === currency)?.won_amount ?? 0;
  const monthData = monthSeries(byMonth.data?.rows, currency).map((p) => {
    const lastYear = (byMonthBefore.data?.rows ?? []).find((r) => r.key === shiftMonth(p.month, -12));
    return { ...p, amount: p.amount / 100, previous: wonIn(lastYear) / 100 };
  });
  const ownerData = pairByKey(sales.data?.rows ?? [], salesBefore.data?.rows ?? [], (r) => r.key ?? "")
    .filter((p) => p.key).map((p) => ({ id: p.key, name: name(p.key), amount: wonIn(p.now) / 100, previous: wonIn(p.before) / 100 }))
    .filter((p) => p.amount || p.previous).sort((a, b) => b.amount - a.amount);
  const forecastRows = forecast.data?.rows ?? [];
  const forecastBefore = (row: (typeof forecastRows)[number]) => row.month
    ? forecastRows.find((r) => r.currency === row.currency && r.month === shiftMonth(row.month!, -1)) : undefined;
  const openMonth = (month: string) => navigate(wonDealsLink(monthBounds(month).from, monthBounds(month).to, currency));
  const openOwner = (owner: string) => navigate(wonDealsLink(period.from, period.to, currency, owner));
  const money = (v: number) => locale.money(Math.round(v * 100), currency);
  const axis = { fontSize: 12, orientation: (rtl ? "right" : "left") as "right" | "left" };
  const ghost = { name: t("previousPeriod"), fill: "#ced4da" };
  const errors = [sales, funnel, calls].find((q) => q.error);
  const periods = [...["7", "30", "90"].map((d) => ({ value: d, label: t("lastDays", { count: Number(d) }) })),
                   { value: "month", label: t("thisMonth") }];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("dashboard")}</Title>
        <SegmentedControl value={choice} onChange={setChoice} data-testid="dashboard-period" size="xs" visibleFrom="sm" data={periods} />
        <Select value={choice} onChange={(v) => v && setChoice(v)} allowDeselect={false} size="xs" w={170} hiddenFrom="sm"
                aria-label={t("tgPeriod")} data-testid="dashboard-period-select" data={periods} />
      </Group>
      <PlanAndTeam />
      <MyTiles />
      <QueryState loading={sales.isLoading} error={errors?.error ?? null} retry={() => { sales.refetch(); funnel.refetch(); calls.refetch(); }} />
      <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
        <Kpi testId="kpi-won" label={t("wonDeals")} value={locale.number(now.won)} previous={salesBefore.data ? locale.number(before.won) : undefined}
             delta={trend(now.won, salesBefore.data ? before.won : null)}
             onClick={() => navigate(dealsLink({ status: "won", closed_after: period.from, closed_before: period.to }))} />
        <Kpi testId="kpi-revenue" label={t("revenue")} value={locale.money(amount(now), currency) || "—"}
             previous={salesBefore.data ? locale.money(amount(before), currency) : undefined}
             delta={trend(amount(now), salesBefore.data ? amount(before) : null)} format={(diff) => locale.money(diff, currency)}
             onClick={() => navigate(wonDealsLink(period.from, period.to, currency))} />
        <Kpi testId="kpi-winrate" label={t("winRate")} value={percent(now.winRate)} previous={salesBefore.data ? percent(before.winRate) : undefined}
             delta={trend(now.winRate, before.winRate)} />
        <Kpi testId="kpi-missed" label={t("missedNotCalledBack")} value={locale.number(calls.data?.missed_not_called_back ?? 0)}
             previous={callsBefore.data ? locale.number(callsBefore.data.missed_not_called_back ?? 0) : undefined}
             delta={trend(calls.data?.missed_not_called_back, callsBefore.data?.missed_not_called_back, true)} onClick={() => navigate("/calls?missed=1")} />
      </SimpleGrid>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Card withBorder data-testid="chart-funnel">
          <Title order={4} mb="sm">{t("funnel")}</Title>
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={funnelData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" fontSize={12} reversed={rtl} />
              <YAxis allowDecimals={false} {...axis} />
              <Tooltip /><Legend />
              <Bar dataKey="entered" name={t("entered")} fill="#228be6" cursor="pointer"
                   onClick={(bar: { id?: string }) => bar.id && navigate(`/deals?pipeline_id=${funnel.data?.pipeline_id ?? ""}&stage_id=${bar.id}`)} />
              <Bar dataKey="won" name={t("stageKind_won")} fill="#40c057" />
              <Bar dataKey="previous" {...ghost} />
            </BarChart>
          </ResponsiveContainer>
          <Group gap={6} mt="xs">
            {funnelData.map((s) => (
              <Badge key={s.id} variant="outline" style={{ cursor: "pointer" }} data-testid={`funnel-${s.id}`}
                     onClick={() => navigate(`/deals?pipeline_id=${funnel.data?.pipeline_id ?? ""}&stage_id=${s.id}`)}
                     rightSection={<Delta value={trend(s.entered, funnelBefore.data ? s.previous : null)} previous={locale.number(s.previous)} />}>
                {s.name}: {s.entered}
              </Badge>
            ))}
          </Group>
        </Card>
        <Card withBorder data-testid="chart-revenue-owner">
          <Title order={4} mb="sm">{t("revenueByOwner")} ({currency})</Title>
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={ownerData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" fontSize={12} reversed={rtl} />
              <YAxis {...axis} tickFormatter={(v: number) => locale.number(v)} />
              <Tooltip formatter={(v: number) => money(v)} /><Legend />
              <Bar dataKey="amount" name={t("revenue")} fill="#7950f2" cursor="pointer"
                   onClick={(bar: { id?: string }) => bar.id && openOwner(bar.id)} />
              <Bar dataKey="previous" {...ghost} />
            </BarChart>
          </ResponsiveContainer>
          <Group gap={6} mt="xs">
            {ownerData.map((o) => (
              <Badge key={o.id} variant="outline" style={{ cursor: "pointer" }} data-testid={`revenue-owner-${o.id}`} onClick={() => openOwner(o.id)}
                     rightSection={<Delta value={trend(o.amount, o.previous)} previous={money(o.previous)} format={money} />}>
                {o.name}: {money(o.amount)}
              </Badge>
            ))}
          </Group>
        </Card>
        <Card withBorder data-testid="chart-revenue">
          <Title order={4} mb="sm">{t("revenueByMonth")} ({currency})</Title>
          <ResponsiveContainer width="100%" height={260}>
            <BarChart data={monthData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="month" fontSize={12} reversed={rtl} />
              <YAxis {...axis} tickFormatter={(v: number) => locale.number(v)} />
              <Tooltip formatter={(v: number) => money(v)} /><Legend />
              <Bar dataKey="amount" name={t("revenue")} fill="#7950f2" cursor="pointer"
                   onClick={(bar: { month?: string }) => bar.month && openMonth(bar.month)} />
              <Bar dataKey="previous" name={t("sameMonthLastYear")} fill="#ced4da" />
            </BarChart>
          </ResponsiveContainer>
          <Group gap={6} mt="xs">
            {monthData.filter((m) => m.amount || m.previous).map((m) => (
              <Badge key={m.month} variant="outline" style={{ cursor: "pointer" }} data-testid={`revenue-month-${m.month}`}
                     onClick={() => openMonth(m.month)}
                     rightSection={<Delta value={trend(m.amount, byMonthBefore.data ? m.previous : null)} previous={money(m.previous)} format={money} />}>
                {m.month}: {money(m.amount)}
              </Badge>
            ))}
          </Group>
        </Card>
        <Card withBorder data-testid="chart-calls">
          <Title order={4} mb="sm">{t("callsByDay")}</Title>
          <ResponsiveContainer width="100%" height={240}>
            <BarChart data={callsData}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" fontSize={11} reversed={rtl} />
              <YAxis allowDecimals={false} {...axis} />
              <Tooltip /><Legend />
              <Bar dataKey="answered" stackId="c" name={t("outcome_answered")} fill="#40c057" />
              <Bar dataKey="missed" stackId="c" name={t("missed")} fill="#fa5252" />
              <Bar dataKey="previous" {...ghost} />
            </BarChart>
          </ResponsiveContainer>
        </Card>
        <Card withBorder data-testid="forecast">
          <Title order={4} mb="sm">{t("forecast")}</Title>
          <Table.ScrollContainer minWidth={320}>
            <Table highlightOnHover>
              <Table.Thead><Table.Tr><Table.Th>{t("month")}</Table.Th><Table.Th>{t("openDeals")}</Table.Th>
                <Table.Th>{t("amount")}</Table.Th><Table.Th>{t("weighted")}</Table.Th></Table.Tr></Table.Thead>
              <Table.Tbody>
                {forecastRows.slice(0, 8).map((r) => {
                  const earlier = forecastBefore(r);
                  return (
                    <Table.Tr key={`${r.month}-${r.currency}`} data-testid={`forecast-${r.month ?? "none"}-${r.currency}`}
                              style={r.month ? { cursor: "pointer" } : undefined}
                              onClick={() => r.month && r.currency && navigate(forecastDealsLink(r.month, r.currency))}>
                      <Table.Td>{r.month ?? t("noDate")}</Table.Td><Table.Td>{locale.number(r.open_count)}</Table.Td>
                      <Table.Td>{locale.money(r.open_amount, r.currency)}</Table.Td>
                      <Table.Td>
                        <Group gap={4} wrap="nowrap">
                          {locale.money(r.weighted_amount, r.currency)}
                          {earlier && <Delta value={trend(r.weighted_amount, earlier.weighted_amount)}
                                             previous={locale.money(earlier.weighted_amount, r.currency)} />}
                        </Group>
                      </Table.Td>
                    </Table.Tr>
                  );
                })}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          {forecast.data?.rows?.length === 0 && <Text c="dimmed" size="sm">{t("nothingHere")}</Text>}
        </Card>
      </SimpleGrid>
    </Stack>
  );
}
