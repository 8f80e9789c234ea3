import { useState } from "react";
import { ActionIcon, Anchor, Badge, Button, Group, Select, Stack, Switch, Table, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useInfiniteQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useSearchParams } from "react-router-dom";
import { api, ok } from "../api/client";
import { PhoneIcon } from "../components/Icons";
import { QueryState } from "../components/QueryState";
import { useClickToCall } from "../lib/actions";
import { duration, zonedToUtc } from "../lib/format";
import { useLocale, usePermissions } from "../lib/me";

const OUTCOMES = ["answered", "no_answer", "busy", "failed", "canceled"] as const;

/** The call log with filters; missed calls nobody called back; click-to-call. */
export function Calls() {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const call = useClickToCall();
  const [direction, setDirection] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<string | null>(null);
  const [params] = useSearchParams();
  const [missed, setMissed] = useState(params.get("missed") === "1");
  const [phoneText, setPhone] = useState("");
  const [phone] = useDebouncedValue(phoneText.trim(), 250);
  const [fromDay, setFromDay] = useState("");
  const [toDay, setToDay] = useState("");
  const query = {
    direction: (direction ?? undefined) as "inbound" | undefined, outcome: (outcome ?? undefined) as "answered" | undefined,
    ...(missed ? { missed: true, called_back: false } : {}), phone: phone || undefined,
    from: fromDay ? zonedToUtc(fromDay, 0, 0, locale.timeZone).toISOString() : undefined,
    to: toDay ? zonedToUtc(toDay, 23, 59, locale.timeZone).toISOString() : undefined,
  };
  const list = useInfiniteQuery({
    queryKey: ["calls", "log", query],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/calls", { params: { query: { ...query, limit: 50, cursor: pageParam } } })),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const calls = list.data?.pages.flatMap((p) => p.items ?? []) ?? [];
  return (
    <Stack>
      <Title order={2}>{t("calls")}</Title>
      <Group align="flex-end">
        <Select label={t("direction")} value={direction} onChange={setDirection} clearable w={140} placeholder={t("any")}
                data={["inbound", "outbound", "internal"].map((d) => ({ value: d, label: t(`direction_${d}`) }))} />
        <Select label={t("outcome")} value={outcome} onChange={setOutcome} clearable w={150} placeholder={t("any")}
                data={OUTCOMES.map((o) => ({ value: o, label: t(`outcome_${o}`) }))} />
        <TextInput label={t("phone")} value={phoneText} onChange={(e) => setPhone(e.currentTarget.value)} w={160} />
        <TextInput type="date" label={t("from")} value={fromDay} onChange={(e) => setFromDay(e.currentTarget.value)} />
        <TextInput type="date" label={t("to")} value={toDay} onChange={(e) => setToDay(e.currentTarget.value)} />
        <Switch label={t("missedNotCalledBack")} checked={missed} onChange={(e) => setMissed(e.currentTarget.checked)} mb={6}
                data-testid="missed-filter" />
      </Group>
      <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
      {!list.isLoading && !calls.length && <Text c="dimmed">{t("nothingHere")}</Text>}
      {calls.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table highlightOnHover data-testid="calls-table">
            <Table.Thead><Table.Tr>
              <Table.Th>{t("when")}</Table.Th><Table.Th>{t("number")}</Table.Th><Table.Th>{t("contact")}</Table.Th>
              <Table.Th visibleFrom="sm">{t("direction")}</Table.Th><Table.Th visibleFrom="sm">{t("outcome")}</Table.Th>
              <Table.Th visibleFrom="sm">{t("duration")}</Table.Th>
            </Table.Tr></Table.Thead>
            <Table.Tbody>
              {calls.map((c) => (
                <Table.Tr key={c.id} data-testid={`call-${c.id}`}>
                  <Table.Td>{locale.dateTime(c.started_at ?? c.created_at)}</Table.Td>
                  <Table.Td>
                    <Group gap={4} wrap="nowrap">
                      <Text size="sm">{c.number}</Text>
                      {c.number && can("calls:originate") && (
                        <ActionIcon size="sm" variant="light" aria-label={t("call")} onClick={() => call.mutate({ to: c.number, contactId: c.contact_id })}
                                    data-testid="click-to-call"><PhoneIcon /></ActionIcon>
                      )}
                    </Group>
                  </Table.Td>
                  <Table.Td>{c.contact_id ? <Anchor component={Link} to={`/contacts/${c.contact_id}`}>{c.contact_name || t("contact")}</Anchor> : "—"}</Table.Td>
                  <Table.Td visibleFrom="sm">{c.direction ? t(`direction_${c.direction}`) : ""}</Table.Td>
                  <Table.Td visibleFrom="sm">
                    {c.missed ? <Badge color={c.called_back ? "gray" : "red"}>{c.called_back ? t("calledBack") : t("missed")}</Badge>
                      : c.outcome ? <Badge variant="light">{t(`outcome_${c.outcome}`)}</Badge> : null}
                  </Table.Td>
                  <Table.Td visibleFrom="sm">{duration(c.talk_s ?? c.duration_s)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {list.hasNextPage && <Button variant="default" onClick={() => list.fetchNextPage()} loading={list.isFetchingNextPage}>{t("loadMore")}</Button>}
    </Stack>
  );
}
