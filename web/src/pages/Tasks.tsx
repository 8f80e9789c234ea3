import { useMemo, useState } from "react";
import { DndContext, KeyboardSensor, PointerSensor, useDraggable, useDroppable, useSensor, useSensors,
         type DragEndEvent } from "@dnd-kit/core";
import { Badge, Button, Card, Group, SegmentedControl, Select, SimpleGrid, Stack, Switch, Text, Title } from "@mantine/core";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { useSearchParams } from "react-router-dom";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { CompleteDialog, CreateTaskDialog } from "../components/TaskDialogs";
import { useRescheduleTask, type Task } from "../lib/actions";
import { addDays, calendarDays, dayKey, moveToDay, zonedToUtc } from "../lib/format";
import { useLocale, usePermissions } from "../lib/me";
import { TaskRow } from "./Today";

type View = "list" | "week" | "month";
const KINDS = ["call", "meeting", "email", "todo"] as const;

function TaskList() {
  const { t } = useTranslation();
  const [params] = useSearchParams();  // a dashboard's drill-down: ?overdue=1&assignee_id=
  const [status, setStatus] = useState<string>("open");
  const [kind, setKind] = useState<string | null>(null);
  const [overdue, setOverdue] = useState(params.get("overdue") === "1");
  const assignee = params.get("assignee_id") ?? undefined;
  const [completing, setCompleting] = useState<Task | null>(null);
  const filters = { status: status as "open", kind: (kind ?? undefined) as "call" | undefined, overdue: overdue || undefined,
                    assignee_id: assignee };
  const list = useInfiniteQuery({
    queryKey: ["tasks", "list", filters],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/tasks", {
      params: { query: { ...filters, sort: "due_at", limit: 50, cursor: pageParam } } })),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const tasks = list.data?.pages.flatMap((p) => p.items ?? []) ?? [];
  return (
    <Stack>
      <Group align="flex-end">
        <Select label={t("status")} value={status} allowDeselect={false} onChange={(v) => v && setStatus(v)} w={140}
                data={["open", "done", "canceled"].map((s) => ({ value: s, label: t(`taskStatus_${s}`) }))} data-testid="task-status" />
        <Select label={t("kind")} value={kind} onChange={setKind} clearable w={140} placeholder={t("any")}
                data={KINDS.map((k) => ({ value: k, label: t(`kind_${k}`) }))} />
        <Switch label={t("overdue")} checked={overdue} onChange={(e) => setOverdue(e.currentTarget.checked)} mb={6} />
      </Group>
      <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
      {!list.isLoading && !tasks.length && <Text c="dimmed">{t("nothingHere")}</Text>}
      <Card withBorder p="xs" data-testid="task-list">
        {tasks.map((task) => <TaskRow key={task.id} task={task} onComplete={setCompleting} />)}
      </Card>
      {list.hasNextPage && <Button variant="default" onClick={() => list.fetchNextPage()} loading={list.isFetchingNextPage}>{t("loadMore")}</Button>}
      <CompleteDialog task={completing} onClose={() => setCompleting(null)} />
    </Stack>
  );
}

function Chip({ task, label }: { task: Task; label: string }) {
  const { attributes, listeners, setNodeRef, transform, isDragging } = useDraggable({ id: task.id ?? "" });
  const style = transform ? { transform: `translate3d(${transform.x}px, ${transform.y}px, 0)`, zIndex: 10 } : undefined;
  return (
    <Badge ref={setNodeRef} {...listeners} {...attributes} fullWidth radius="sm" variant={task.status === "done" ? "outline" : "light"}
           color={task.overdue ? "red" : task.kind === "meeting" ? "grape" : "blue"} data-testid={`cal-task-${task.id}`}
           style={{ ...style, cursor: "grab", opacity: isDragging ? 0.6 : 1, textTransform: "none", justifyContent: "flex-start" }}>
      {label} {task.title}
    </Badge>
  );
}

function Day({ day, tasks, inMonth, isToday, label }: { day: string; tasks: Task[]; inMonth: boolean; isToday: boolean; label: string }) {
  const locale = useLocale();
  const { setNodeRef, isOver } = useDroppable({ id: day });
  return (
    <Card ref={setNodeRef} withBorder p={4} mih={90} data-testid={`day-${day}`}
          bg={isOver ? "var(--mantine-color-blue-light)" : isToday ? "var(--mantine-color-yellow-light)" : undefined}
          style={{ opacity: inMonth ? 1 : 0.5 }}>
      <Text size="xs" fw={700} mb={4}>{label}</Text>
      <Stack gap={2}>{tasks.map((task) => <Chip key={task.id} task={task} label={locale.time(task.due_at)} />)}</Stack>
    </Card>
  );
}

function Calendar({ view }: { view: "week" | "month" }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const [anchor, setAnchor] = useState(locale.today());
  const days = useMemo(() => calendarDays(anchor, view), [anchor, view]);
  const from = zonedToUtc(days[0], 0, 0, locale.timeZone).toISOString();
  const to = zonedToUtc(addDays(days[days.length - 1], 1), 0, 0, locale.timeZone).toISOString();
  const key = ["tasks", "calendar", from, to];
  const calendar = useQuery({
    queryKey: key,
    queryFn: async () => ok(await api.GET("/api/v1/calendar", { params: { query: { from, to, limit: 500, include_done: true } } })).items ?? [],
  });
  const byDay = useMemo(() => {
    const map = new Map<string, Task[]>();
    for (const task of calendar.data ?? []) {
      if (!task.due_at) continue;
      const k = dayKey(task.due_at, locale.timeZone);
      map.set(k, [...(map.get(k) ?? []), task]);
    }
    return map;
  }, [calendar.data, locale.timeZone]);
  const reschedule = useRescheduleTask();
  const sensors = useSensors(useSensor(PointerSensor, { activationConstraint: { distance: 5 } }), useSensor(KeyboardSensor));
  const onDragEnd = ({ active, over }: DragEndEvent) => {
    const task = calendar.data?.find((x) => x.id === active.id);
    if (!task || !over || dayKey(task.due_at ?? "", locale.timeZone) === over.id) return;
    const due_at = moveToDay(task.due_at, String(over.id), locale.timeZone);
    queryClient.setQueryData<Task[]>(key, (now) => now?.map((x) => x.id === task.id ? { ...x, due_at } : x));
    reschedule.mutate({ task, due_at });
  };
  const month = anchor.slice(0, 7);
  const weekday = new Intl.DateTimeFormat(locale.language, { weekday: "short", timeZone: "UTC" });
  const dayLabel = new Intl.DateTimeFormat(locale.language, view === "week"
    ? { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" } : { day: "numeric", timeZone: "UTC" });
  const title = new Intl.DateTimeFormat(locale.language, { month: "long", year: "numeric", timeZone: "UTC" })
    .format(new Date(`${anchor}T12:00:00Z`));
  const step = view === "week" ? 7 : 0;
  const shift = (sign: number) => setAnchor(step ? addDays(anchor, sign * step)
    : (() => { const [y, m] = anchor.split("-").map(Number); return new Date(Date.UTC(y, m - 1 + sign, 1)).toISOString().slice(0, 10); })());
  return (
    <Stack>
      <Group>
        <Button variant="default" size="xs" onClick={() => shift(-1)} aria-label={t("previous")}>‹</Button>
        <Button variant="default" size="xs" onClick={() => setAnchor(locale.today())}>{t("today")}</Button>
        <Button variant="default" size="xs" onClick={() => shift(1)} aria-label={t("next")}>›</Button>
        <Text fw={600}>{title}</Text>
      </Group>
      <QueryState loading={calendar.isLoading} error={calendar.error} retry={() => calendar.refetch()} />
      <DndContext sensors={sensors} onDragEnd={onDragEnd}>
        {view === "month" && (
          <SimpleGrid cols={7} spacing={4}>
            {days.slice(0, 7).map((d) => <Text key={d} size="xs" c="dimmed" ta="center">{weekday.format(new Date(`${d}T12:00:00Z`))}</Text>)}
          </SimpleGrid>
        )}
        <SimpleGrid cols={{ base: view === "week" ? 1 : 7, sm: 7 }} spacing={4} data-testid="calendar">
          {days.map((d) => (
            <Day key={d} day={d} tasks={byDay.get(d) ?? []} inMonth={view === "week" || d.startsWith(month)}
                 isToday={d === locale.today()} label={dayLabel.format(new Date(`${d}T12:00:00Z`))} />
          ))}
        </SimpleGrid>
      </DndContext>
    </Stack>
  );
}

/** Tasks: a filtered list, or a week / month calendar where a task is dragged to another day. */
export function Tasks() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const [params, setParams] = useSearchParams();
  const view = (params.get("view") ?? "list") as View;
  const [creating, setCreating] = useState(false);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("tasks")}</Title>
        <Group>
          <SegmentedControl value={view} onChange={(v) => setParams({ view: v }, { replace: true })} data-testid="task-view"
                            data={[{ value: "list", label: t("list") }, { value: "week", label: t("week") }, { value: "month", label: t("month") }]} />
          {can("tasks:write") && <Button onClick={() => setCreating(true)} data-testid="new-task">{t("newTask")}</Button>}
        </Group>
      </Group>
      {view === "list" ? <TaskList /> : <Calendar view={view} />}
      <CreateTaskDialog opened={creating} onClose={() => setCreating(false)} />
    </Stack>
  );
}
