import { useMemo, useState } from "react";
import { ActionIcon, Anchor, Badge, Button, Card, Group, Menu, SimpleGrid, Stack, Text, Title, Tooltip } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { api, ok } from "../api/client";
import { CheckIcon, ClockIcon, PhoneIcon } from "../components/Icons";
import { QueryState } from "../components/QueryState";
import { CompleteDialog, CreateTaskDialog } from "../components/TaskDialogs";
import { buildAgenda } from "../lib/agenda";
import { useClickToCall, useCompleteTask, useRescheduleTask, type Task } from "../lib/actions";
import { addDays, moveToDay } from "../lib/format";
import { useLocale, usePermissions } from "../lib/me";
import { needsNextStep } from "../lib/agenda";

export function TaskRow({ task, onComplete, noCall }: { task: Task; onComplete: (task: Task) => void; noCall?: boolean }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const call = useClickToCall();
  const reschedule = useRescheduleTask();
  const complete = useCompleteTask();
  const to = (day: string) => reschedule.mutate({ task, due_at: moveToDay(task.due_at, day, locale.timeZone) });
  const inHour = () => reschedule.mutate({ task, due_at: new Date(Date.now() + 3600_000).toISOString() });
  return (
    <Group justify="space-between" wrap="nowrap" data-testid={`task-${task.id}`} py={4}
           style={{ borderBottom: "1px solid var(--mantine-color-default-border)" }}>
      <Stack gap={0} style={{ minWidth: 0 }}>
        <Text size="sm" fw={600} truncate>{task.title}</Text>
        <Group gap={6}>
          <Badge size="xs" variant="light">{t(`kind_${task.kind ?? "todo"}`)}</Badge>
          <Text size="xs" c={task.overdue ? "red" : "dimmed"}>{locale.dateTime(task.due_at)}</Text>
          {task.contact_id && <Anchor component={Link} size="xs" to={`/contacts/${task.contact_id}`}>{t("contact")}</Anchor>}
        </Group>
      </Stack>
      {can("tasks:write") && (
        <Group gap={4} wrap="nowrap">
          {task.contact_id && !noCall && can("calls:originate") && (
            <Tooltip label={t("call")}><ActionIcon variant="light" aria-label={t("call")} loading={call.isPending}
              onClick={() => call.mutate({ contactId: task.contact_id })} data-testid="task-call"><PhoneIcon /></ActionIcon></Tooltip>
          )}
          <Menu position="bottom-end">
            <Menu.Target>
              <Tooltip label={t("reschedule")}><ActionIcon variant="light" aria-label={t("reschedule")}
                data-testid="task-reschedule" loading={reschedule.isPending}><ClockIcon /></ActionIcon></Tooltip>
            </Menu.Target>
            <Menu.Dropdown>
              <Menu.Item onClick={inHour}>{t("inOneHour")}</Menu.Item>
              <Menu.Item onClick={() => to(addDays(locale.today(), 1))} data-testid="reschedule-tomorrow">{t("tomorrow")}</Menu.Item>
              <Menu.Item onClick={() => to(addDays(locale.today(), 7))}>{t("nextWeek")}</Menu.Item>
            </Menu.Dropdown>
          </Menu>
          <Tooltip label={t("complete")}><ActionIcon color="green" variant="light" aria-label={t("complete")}
            loading={complete.isPending} data-testid="task-complete"
            onClick={() => needsNextStep(task) ? onComplete(task) : complete.mutate({ task })}><CheckIcon /></ActionIcon></Tooltip>
        </Group>
      )}
    </Group>
  );
}

function Section({ title, count, color, children, testId }: { title: string; count: number; color: string;
                                                               children: React.ReactNode; testId: string }) {
  return (
    <Card withBorder data-testid={testId}>
      <Group justify="space-between" mb="xs">
        <Title order={4}>{title}</Title>
        <Badge color={color}>{count}</Badge>
      </Group>
      <Stack gap={0}>{children}</Stack>
    </Card>
  );
}

/** Today: overdue, due today, deals without a next step, missed calls nobody called back. */
export function Today() {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const call = useClickToCall();
  const agenda = useQuery({
    queryKey: ["tasks", "agenda"],
    queryFn: async () => ok(await api.GET("/api/v1/agenda", { params: { query: { limit: 100 } } })),
  });
  const missed = useQuery({
    queryKey: ["calls", "missed"],
    enabled: can("calls:read"),
    queryFn: async () => ok(await api.GET("/api/v1/calls", { params: { query: { missed: true, called_back: false, limit: 50 } } })).items ?? [],
  });
  const view = useMemo(() => buildAgenda(agenda.data, missed.data), [agenda.data, missed.data]);
  const [completing, setCompleting] = useState<Task | null>(null);
  const [nextFor, setNextFor] = useState<{ dealId?: string | null; contactId?: string | null; title: string } | null>(null);
  const empty = <Text size="sm" c="dimmed">{t("nothingHere")}</Text>;
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("today")}</Title>
        {agenda.data?.date && <Text c="dimmed">{locale.date(`${agenda.data.date}T12:00:00Z`)}</Text>}
      </Group>
      <QueryState loading={agenda.isLoading} error={agenda.error} retry={() => agenda.refetch()} />
      {agenda.data && (
        <SimpleGrid cols={{ base: 1, md: 2 }}>
          <Section title={t("overdue")} count={view.overdue.length} color="red" testId="agenda-overdue">
            {view.overdue.length ? view.overdue.map((task) => <TaskRow key={task.id} task={task} onComplete={setCompleting} />) : empty}
          </Section>
          <Section title={t("dueToday")} count={view.today.length} color="blue" testId="agenda-today">
            {view.today.length ? view.today.map((task) => <TaskRow key={task.id} task={task} onComplete={setCompleting} />) : empty}
          </Section>
          <Section title={t("dealsWithoutNextStep")} count={view.dealsWithoutNextStep?.length ?? 0} color="orange" testId="agenda-deals">
            {view.dealsWithoutNextStep === null && <Text size="sm" c="orange">{t("serviceUnavailable")}</Text>}
            {view.dealsWithoutNextStep?.length === 0 && empty}
            {view.dealsWithoutNextStep?.map((deal) => (
              <Group key={deal.id} justify="space-between" wrap="nowrap" py={4} data-testid={`agenda-deal-${deal.id}`}>
                <Stack gap={0} style={{ minWidth: 0 }}>
                  <Text size="sm" fw={600} truncate>{deal.title}</Text>
                  <Text size="xs" c="dimmed">{locale.money(deal.amount, deal.currency)}</Text>
                </Stack>
                {can("tasks:write") && (
                  <Button size="compact-xs" variant="light" data-testid="add-next-step"
                          onClick={() => setNextFor({ dealId: deal.id, contactId: deal.contact_id, title: `${t("followUp")}: ${deal.title ?? ""}` })}>
                    {t("addNextStep")}
                  </Button>
                )}
              </Group>
            ))}
          </Section>
          {can("calls:read") && (
            <Section title={t("missedCalls")} count={view.missedCalls.length} color="grape" testId="agenda-missed">
              {view.missedCalls.length ? view.missedCalls.map((c) => (
                <Group key={c.id} justify="space-between" wrap="nowrap" py={4}>
                  <Stack gap={0}>
                    <Text size="sm" fw={600}>{c.contact_name || c.number}</Text>
                    <Text size="xs" c="dimmed">{c.number} · {locale.dateTime(c.started_at ?? c.created_at)}</Text>
                  </Stack>
                  {can("calls:originate") && (
                    <Button size="compact-xs" variant="light" loading={call.isPending}
                            onClick={() => call.mutate({ to: c.number, contactId: c.contact_id })}>{t("callBack")}</Button>
                  )}
                </Group>
              )) : empty}
            </Section>
          )}
        </SimpleGrid>
      )}
      <CompleteDialog task={completing} onClose={() => setCompleting(null)} />
      <CreateTaskDialog opened={!!nextFor} onClose={() => setNextFor(null)} dealId={nextFor?.dealId}
                        contactId={nextFor?.contactId} title={nextFor?.title} />
    </Stack>
  );
}
