import { useState } from "react";
import { Button, Group, Select, Stack, Switch, Table, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok } from "../api/client";
import { Delta } from "../components/Delta";
import { QueryState } from "../components/QueryState";
import { addDays, zonedToUtc } from "../lib/format";
import { useLocale } from "../lib/me";
import { previousDays, trend } from "../lib/periods";
import { compareRows, flatten, lowerIsBetter } from "../lib/report";
import { toCsv } from "../lib/views";

const REPORTS = ["funnel", "sales:owner", "sales:month", "sales:source", "calls:agent", "calls:day", "tasks:assignee",
                 "tasks:week", "sources:month", "forecast"] as const;
// how a report's rows pair with the previous period's: the row's identity, and its time bucket
const PAIRING: Record<string, [string | null, string | null]> = {
  "funnel": ["stage_id", null], "sales:owner": ["key", null], "sales:month": [null, "key"], "sales:source": ["key", null],
  "calls:agent": ["key", null], "calls:day": [null, "key"], "tasks:assignee": ["assignee_id", "period"],
  "tasks:week": ["assignee_id", "period"], "sources:month": ["source", "period"],
};

async function fetchReport(report: string, from: string, to: string): Promise<Record<string, unknown>[]> {
  const [name, by] = report.split(":");
  if (name === "funnel") return ok(await api.GET("/api/v1/reports/funnel", { params: { query: { from, to } } })).stages ?? [];
  if (name === "sales") return ok(await api.GET("/api/v1/reports/sales", { params: { query: { from, to, group_by: by as "month" } } })).rows ?? [];
  if (name === "calls") return ok(await api.GET("/api/v1/reports/calls", { params: { query: { from, to, group_by: by as "day" } } })).rows ?? [];
  if (name === "tasks") return ok(await api.GET("/api/v1/reports/tasks", { params: { query: { from, to, group_by: by as "week" } } })).items ?? [];
  if (name === "sources") return ok(await api.GET("/api/v1/reports/sources", { params: { query: { from, to, period: by as "month" } } })).rows ?? [];
  return ok(await api.GET("/api/v1/reports/forecast", { params: { query: {} } })).rows ?? [];
}

/** The report endpoints as tables, for a period, each number with its change against the
 * period just before (as many days), with a CSV export of what is shown. */
export function Reports() {
  const { t } = useTranslation();
  const locale = useLocale();
  const [report, setReport] = useState<string>("sales:month");
  const [fromDay, setFromDay] = useState(addDays(locale.today(), -89));
  const [toDay, setToDay] = useState(locale.today());
  const from = zonedToUtc(fromDay, 0, 0, locale.timeZone).toISOString();
  const to = zonedToUtc(addDays(toDay, 1), 0, 0, locale.timeZone).toISOString();
  const earlier = previousDays(fromDay, toDay);
  const [compare, setCompare] = useState(true);
  const comparable = report in PAIRING;
  const data = useQuery({ queryKey: ["reports", "table", report, from, to], queryFn: () => fetchReport(report, from, to) });
  const before = useQuery({
    queryKey: ["reports", "table", report, earlier.fromDay, earlier.toDay],
    enabled: compare && comparable,
    queryFn: () => fetchReport(report, zonedToUtc(earlier.fromDay, 0, 0, locale.timeZone).toISOString(),
                               zonedToUtc(addDays(earlier.toDay, 1), 0, 0, locale.timeZone).toISOString()),
  });
  const table = flatten(data.data ?? []);
  const previous = flatten(before.data ?? []);
  const [group, bucket] = PAIRING[report] ?? [null, null];
  const shown = compare && comparable && before.data ? compareRows(table.rows, previous.rows, group, bucket)
                                                     : table.rows.map((row) => ({ now: row, before: undefined }));
  const cell = (value: unknown) => typeof value === "number" ? locale.number(value) : String(value ?? "");
  const exportCsv = () => {
    const url = URL.createObjectURL(new Blob([toCsv([table.columns, ...table.rows.map((r) => table.columns.map((c) => r[c] as string | number | null))])],
                                               { type: "text/csv" }));
    const a = document.createElement("a");
    a.href = url; a.download = `${report.replace(":", "-")}.csv`; a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  return (
    <Stack>
      <Title order={2}>{t("reports")}</Title>
      <Group align="flex-end">
        <Select label={t("report")} value={report} allowDeselect={false} onChange={(v) => v && setReport(v)} w={240} data-testid="report-choice"
                data={REPORTS.map((r) => ({ value: r, label: t(`report_${r.replace(":", "_")}`) }))} />
        <TextInput type="date" label={t("from")} value={fromDay} onChange={(e) => setFromDay(e.currentTarget.value)} />
        <TextInput type="date" label={t("to")} value={toDay} onChange={(e) => setToDay(e.currentTarget.value)} />
        {comparable && <Switch label={t("compareWithPrevious")} checked={compare} onChange={(e) => setCompare(e.currentTarget.checked)}
                               data-testid="report-compare" mb={8} />}
        <Button variant="default" onClick={exportCsv} disabled={!table.rows.length} data-testid="report-export">{t("export")}</Button>
      </Group>
      <QueryState loading={data.isLoading} error={data.error} retry={() => data.refetch()} />
      {data.data && !table.rows.length && <Text c="dimmed">{t("nothingHere")}</Text>}
      {table.rows.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table striped data-testid="report-table">
            <Table.Thead><Table.Tr>{table.columns.map((c) => <Table.Th key={c}>{c}</Table.Th>)}</Table.Tr></Table.Thead>
            <Table.Tbody>
              {shown.map(({ now, before: prior }, i) => (
                <Table.Tr key={i}>{table.columns.map((c) => (
                  <Table.Td key={c}>
                    {cell(now[c])}
                    {compare && comparable && before.data && typeof (now[c] ?? prior?.[c] ?? null) === "number" && c !== group && c !== bucket && (
                      <span style={{ marginInlineStart: 4 }}>
                        <Delta value={trend((now[c] as number | null) ?? 0, (prior?.[c] as number | null) ?? 0, lowerIsBetter(c))}
                               previous={cell(prior?.[c] ?? 0)} />
                      </span>
                    )}
                  </Table.Td>
                ))}</Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}
