import { useState } from "react";
import { Button, Group, Select, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { addDays, zonedToUtc } from "../lib/format";
import { useLocale } from "../lib/me";
import { flatten } from "../lib/report";
import { toCsv } from "../lib/views";

const REPORTS = ["funnel", "sales:owner", "sales:month", "sales:source", "calls:agent", "calls:day", "tasks:assignee",
                 "tasks:week", "sources:month", "forecast"] as const;

/** The report endpoints as tables, for a period, with a CSV export of what is shown. */
export function Reports() {
  const { t } = useTranslation();
  const locale = useLocale();
  const [report, setReport] = useState<string>("sales:month");
  const [fromDay, setFromDay] = useState(addDays(locale.today(), -89));
  const [toDay, setToDay] = useState(locale.today());
  const from = zonedToUtc(fromDay, 0, 0, locale.timeZone).toISOString();
  const to = zonedToUtc(addDays(toDay, 1), 0, 0, locale.timeZone).toISOString();
  const data = useQuery({
    queryKey: ["reports", "table", report, from, to],
    queryFn: async (): Promise<Record<string, unknown>[]> => {
      const [name, by] = report.split(":");
      if (name === "funnel") return ok(await api.GET("/api/v1/reports/funnel", { params: { query: { from, to } } })).stages ?? [];
      if (name === "sales") return ok(await api.GET("/api/v1/reports/sales", { params: { query: { from, to, group_by: by as "month" } } })).rows ?? [];
      if (name === "calls") return ok(await api.GET("/api/v1/reports/calls", { params: { query: { from, to, group_by: by as "day" } } })).rows ?? [];
      if (name === "tasks") return ok(await api.GET("/api/v1/reports/tasks", { params: { query: { from, to, group_by: by as "week" } } })).items ?? [];
      if (name === "sources") return ok(await api.GET("/api/v1/reports/sources", { params: { query: { from, to, period: by as "month" } } })).rows ?? [];
      return ok(await api.GET("/api/v1/reports/forecast", { params: { query: {} } })).rows ?? [];
    },
  });
  const table = flatten(data.data ?? []);
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
        <Button variant="default" onClick={exportCsv} disabled={!table.rows.length} data-testid="report-export">{t("export")}</Button>
      </Group>
      <QueryState loading={data.isLoading} error={data.error} retry={() => data.refetch()} />
      {data.data && !table.rows.length && <Text c="dimmed">{t("nothingHere")}</Text>}
      {table.rows.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table striped data-testid="report-table">
            <Table.Thead><Table.Tr>{table.columns.map((c) => <Table.Th key={c}>{c}</Table.Th>)}</Table.Tr></Table.Thead>
            <Table.Tbody>
              {table.rows.map((row, i) => (
                <Table.Tr key={i}>{table.columns.map((c) => (
                  <Table.Td key={c}>{typeof row[c] === "number" ? locale.number(row[c] as number) : String(row[c] ?? "")}</Table.Td>
                ))}</Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}
