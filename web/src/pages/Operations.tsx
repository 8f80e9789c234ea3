import { useState } from "react";
import { Badge, Button, Card, Code, Group, Select, Stack, Table, Text, TextInput, Title, Tooltip } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { useLocale } from "../lib/me";
import { auditQuery, type AuditFilters } from "../lib/settings";

const METHODS = ["POST", "PATCH", "PUT", "DELETE"] as const;
const METHOD_COLOR: Record<string, string> = { POST: "green", PATCH: "blue", PUT: "blue", DELETE: "red" };

/** Settings → Audit log (admins): every write through the gateway, newest first, by user,
 * record type, method and days. */
export function AuditLog() {
  const { t } = useTranslation();
  const locale = useLocale();
  const [filters, setFilters] = useState<AuditFilters>({});
  const users = useQuery({
    queryKey: ["users"],
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const query = auditQuery(filters);
  const audit = useInfiniteQuery({
    queryKey: ["audit", query],
    initialPageParam: "",
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/audit", { params: { query: {
      ...query, method: query.method as "POST" | undefined, limit: 50, ...(pageParam ? { cursor: pageParam } : {}) } } })),
    getNextPageParam: (last) => last.next_cursor || undefined,
  });
  const entries = audit.data?.pages.flatMap((p) => p.items ?? []) ?? [];
  return (
    <Stack>
      <Title order={2}>{t("auditLog")}</Title>
      <Group align="flex-end" wrap="wrap" gap="xs" data-testid="audit-filters">
        <Select label={t("auditUser")} clearable searchable w={200} value={filters.actor_id ?? null} data-testid="audit-user"
                data={(users.data ?? []).map((u) => ({ value: u.id!, label: u.name ? `${u.name} (${u.email})` : u.email ?? u.id! }))}
                onChange={(v) => setFilters({ ...filters, actor_id: v })} />
        <TextInput label={t("auditResource")} placeholder="contacts" w={140} value={filters.resource ?? ""} data-testid="audit-resource"
                   onChange={(e) => setFilters({ ...filters, resource: e.currentTarget.value })} />
        <Select label={t("auditMethod")} clearable w={120} value={filters.method ?? null} data={[...METHODS]}
                onChange={(v) => setFilters({ ...filters, method: v })} />
        <TextInput label={t("from")} type="date" w={150} value={filters.from ?? ""} onChange={(e) => setFilters({ ...filters, from: e.currentTarget.value })} />
        <TextInput label={t("to")} type="date" w={150} value={filters.to ?? ""} onChange={(e) => setFilters({ ...filters, to: e.currentTarget.value })} />
      </Group>
      <QueryState loading={audit.isLoading} error={audit.error} retry={() => audit.refetch()} />
      {audit.data && !entries.length && <Text c="dimmed">{t("auditNone")}</Text>}
      {!!entries.length && (
        <Table.ScrollContainer minWidth={360}>
          <Table data-testid="audit-table" fz="sm">
            <Table.Thead><Table.Tr><Table.Th>{t("auditWhen")}</Table.Th><Table.Th>{t("auditUser")}</Table.Th>
              <Table.Th>{t("auditAction")}</Table.Th><Table.Th visibleFrom="sm">{t("auditFields")}</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {entries.map((e) => (
                <Table.Tr key={e.id} data-testid="audit-row">
                  <Table.Td style={{ whiteSpace: "nowrap" }}>{locale.dateTime(e.at)}</Table.Td>
                  <Table.Td>{e.actor_email ?? (e.api_key_id ? `${t("apiKey")} ${e.api_key_id.slice(0, 8)}` : "—")}</Table.Td>
                  <Table.Td style={{ wordBreak: "break-all" }}>
                    <Badge size="xs" color={METHOD_COLOR[e.method ?? ""] ?? "gray"} variant="light" me={4}>{e.method}</Badge>
                    <Code>{e.path}</Code> <Text span size="xs" c={(e.status ?? 200) >= 400 ? "red" : "dimmed"}>{e.status}</Text>
                  </Table.Td>
                  <Table.Td visibleFrom="sm"><Text size="xs" c="dimmed">{(e.fields ?? []).join(", ")}</Text></Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {audit.hasNextPage && (
        <Group justify="center"><Button variant="default" loading={audit.isFetchingNextPage} onClick={() => audit.fetchNextPage()}>{t("loadMore")}</Button></Group>
      )}
    </Stack>
  );
}

/** Settings → Dead letters (admins): each service's events that kept failing, with their
 * error, and a replay that moves them back to their queue. */
export function DeadLetters() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const letters = useQuery({
    queryKey: ["dead-letters"],
    queryFn: async () => ok(await api.GET("/api/v1/admin/dead-letters", {})).items ?? [],
  });
  const replay = useMutation({
    mutationFn: async ({ service, queue }: { service: string; queue: string }) =>
      ok(await api.POST("/api/v1/admin/dead-letters/replay", { body: { service: service as "tasks", queue } })),
    onSuccess: (answer) => toasts.show({ color: "green", message:
      t("dlReplayed", { count: Object.values(answer.moved ?? {}).reduce((a, b) => a + b, 0) }) }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["dead-letters"] }),
  });
  const parked = (letters.data ?? []).filter((q) => (q.count ?? 0) > 0);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("deadLetters")}</Title>
        <Button variant="default" size="xs" onClick={() => letters.refetch()} loading={letters.isFetching}>{t("refresh")}</Button>
      </Group>
      <Text size="sm" c="dimmed">{t("dlHint")}</Text>
      <QueryState loading={letters.isLoading} error={letters.error} retry={() => letters.refetch()} />
      {letters.data && !parked.length && <Text c="dimmed" data-testid="dl-none">{t("dlNone")}</Text>}
      {parked.map((q) => (
        <Card key={`${q.service}/${q.queue}`} withBorder padding="sm" data-testid={`dl-${q.queue}`}>
          <Group justify="space-between" wrap="nowrap" align="flex-start">
            <Stack gap={2} style={{ minWidth: 0 }}>
              <Group gap="xs"><Badge variant="light">{q.service}</Badge><Badge color="red" data-testid="dl-count">{q.count}</Badge></Group>
              <Code style={{ wordBreak: "break-all" }}>{q.queue}</Code>
            </Stack>
            <Button size="compact-sm" variant="light" loading={replay.isPending && replay.variables?.queue === q.queue}
                    onClick={() => replay.mutate({ service: q.service!, queue: q.queue! })} data-testid="dl-replay">{t("dlReplay")}</Button>
          </Group>
          <Stack gap={4} mt="xs">
            {(q.messages ?? []).map((m, i) => (
              <Card key={i} withBorder padding={6} bg="var(--mantine-color-gray-light)">
                <Text size="xs" c="red" style={{ wordBreak: "break-word" }} data-testid="dl-error">{m.error ?? "—"}</Text>
                <Text size="xs" c="dimmed">{t("dlAttempts", { count: m.attempts ?? 0 })}</Text>
                <Tooltip label={m.body} multiline w={360}>
                  <Text size="xs" ff="monospace" lineClamp={2} style={{ wordBreak: "break-all" }}>{m.body}</Text>
                </Tooltip>
              </Card>
            ))}
          </Stack>
        </Card>
      ))}
    </Stack>
  );
}
