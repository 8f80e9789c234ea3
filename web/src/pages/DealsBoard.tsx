import { useEffect, useMemo, useRef, useState } from "react";
import { DndContext, PointerSensor, KeyboardSensor, useDraggable, useDroppable, useSensor, useSensors,
         type DragEndEvent } from "@dnd-kit/core";
import { Anchor, Badge, Button, Card, Drawer, Group, Modal, ScrollArea, SegmentedControl, Select, Stack, Table, Text, TextInput, Timeline, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, ok, type Deal, type Stage } from "../api/client";
import { ClockIcon } from "../components/Icons";
import { DealSales } from "../components/DealSales";
import { QueryState } from "../components/QueryState";
import { addDays, money, totalsByCurrency } from "../lib/format";
import { useLocale, usePermissions } from "../lib/me";


/** The later of two reads of a deal (by version, then updated_at). */
export function newest(listed: Deal, single?: Deal): Deal {
  if (!single || single.id !== listed.id) return listed;
  if (single.version != null && listed.version != null) return single.version > listed.version ? { ...listed, ...single } : listed;
  return (single.updated_at ?? "") > (listed.updated_at ?? "") ? { ...listed, ...single } : listed;
}

function DealCard({ deal, language, movable, onOpen }: { deal: Deal; language: string; movable: boolean; onOpen: (deal: Deal) => void }) {
  const { attributes, listeners, setNodeRef, transform, isDragging } = useDraggable({ id: deal.id ?? "", disabled: !movable });
  const style = transform ? { transform: `translate3d(${transform.x}px, ${transform.y}px, 0)`, zIndex: 10 } : undefined;
  return (
    <Card ref={setNodeRef} withBorder p="xs" style={{ ...style, opacity: isDragging ? 0.7 : 1, cursor: movable ? "grab" : "default" }}
          {...listeners} {...attributes} data-testid={`deal-${deal.id}`}
          onDoubleClick={() => onOpen(deal)} onKeyDown={(e) => { if (e.key === "Enter") onOpen(deal); }}>
      <Text size="sm" fw={600}>{deal.title}</Text>
      <Group gap={4} justify="space-between">
        <Text size="xs" c="dimmed">{money(deal.amount, deal.currency, language)}</Text>
        {deal.rotting && <Badge size="xs" color="orange" leftSection={<ClockIcon />} aria-label="rotting" />}
      </Group>
    </Card>
  );
}

function Column({ stage, deals, language, movable, focused, onOpen }: { stage: Stage; deals: Deal[]; language: string; movable: boolean; focused: boolean; onOpen: (deal: Deal) => void }) {
  const { setNodeRef, isOver } = useDroppable({ id: stage.id ?? "" });
  const box = useRef<HTMLDivElement | null>(null);
  useEffect(() => { if (focused) box.current?.scrollIntoView({ block: "nearest", inline: "center" }); }, [focused]);
  const totals = totalsByCurrency(deals);
  const color = stage.kind === "won" ? "green" : stage.kind === "lost" ? "red" : "blue";
  return (
    <Card withBorder w={200} miw={200} p="xs" bg={isOver ? "var(--mantine-color-blue-light)" : undefined}
          data-testid={`stage-${stage.id}`} data-stage-name={stage.name} data-focused={focused || undefined}
          style={focused ? { outline: "2px solid var(--mantine-color-blue-filled)" } : undefined}
          ref={(node: HTMLDivElement | null) => { setNodeRef(node); box.current = node; }}>
      <Group justify="space-between" mb="xs" wrap="nowrap">
        <Text fw={700} size="sm">{stage.name}</Text>
        <Badge color={color} variant="light">{deals.length}</Badge>
      </Group>
      <Text size="xs" c="dimmed" mb="xs" data-testid="stage-total">
        {totals.map((x) => money(x.amount, x.currency, language)).join(" · ") || "—"}</Text>
      <Stack gap="xs" mih={80}>
        {deals.map((deal) => <DealCard key={deal.id} deal={deal} language={language} movable={movable} onOpen={onOpen} />)}
      </Stack>
    </Card>
  );
}

const DRILL = ["status", "currency", "closed_after", "closed_before", "expected_close_from", "expected_close_to"] as const;

/** One column per stage; drag a deal to move it (a lost stage asks the reason). */
export function DealsBoard() {
  const { t, i18n } = useTranslation();
  const { can, me } = usePermissions();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const pipelines = useQuery({
    queryKey: ["pipelines"],
    queryFn: async () => ok(await api.GET("/api/v1/pipelines", {})).items ?? [],
  });
  // ?pipeline_id=&stage_id= (a dashboard's drill-down): that pipeline, that column marked
  const [params] = useSearchParams();
  const [chosen, setChosen] = useState<string | null>(params.get("pipeline_id"));
  const focusedStage = params.get("stage_id");
  const pipeline = pipelines.data?.find((p) => p.id === chosen) ?? pipelines.data?.find((p) => p.is_default) ?? pipelines.data?.[0];
  const [owner, setOwner] = useState<string | null>(params.get("owner_id"));  // a drill-down from a plan
  // a dashboard's drill-down to the deals behind a figure (won in a period, expected to close
  // in a month, in a currency): the list of exactly those, over every pipeline unless one is named
  const drill = useMemo(() => Object.fromEntries(DRILL.map((k) => [k, params.get(k)]).filter(([, v]) => v)) as Partial<Record<(typeof DRILL)[number], string>>,
                        [params]);
  const drilling = Object.keys(drill).length > 0;
  const everyPipeline = drilling && !chosen;
  const navigate = useNavigate();
  const [view, setView] = useState(drilling ? "list" : "board");
  const [opened, setOpened] = useState<Deal | null>(null);
  const users = useQuery({
    queryKey: ["users"],
    enabled: can("users:read"),
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200, active: true } } })).items ?? [],
  });
  const deals = useQuery({
    queryKey: ["deals", "board", everyPipeline ? null : pipeline?.id, owner, drill],
    enabled: everyPipeline || !!pipeline?.id,
    // a list may be answered from the search index, which follows writes a moment later: a
    // deal read on its own since (the drawer's, after line items changed its amount) wins
    queryFn: async () => (ok(await api.GET("/api/v1/deals", {
      params: { query: { ...(everyPipeline ? {} : { pipeline_id: pipeline!.id }), limit: 500, ...(owner ? { owner_id: owner } : {}),
                         ...(drill as { status?: "open" }) } } })).items ?? [])
      .map((deal) => newest(deal, queryClient.getQueryData<Deal>(["deals", "one", deal.id]))),
  });
  const stageOf = (id?: string | null) => (pipelines.data ?? []).flatMap((p) => p.stages ?? []).find((st) => st.id === id);
  const ownerName = (id?: string | null) => users.data?.find((u) => u.id === id)?.name ?? (id === me?.id ? t("me") : "");
  const [lost, setLost] = useState<{ deal: Deal; stage: Stage } | null>(null);

  const move = useMutation({
    mutationFn: async ({ deal, stage, lostReason }: { deal: Deal; stage: Stage; lostReason?: string }) =>
      ok(await api.POST("/api/v1/deals/{deal_id}/move", { params: { path: { deal_id: deal.id! } },
        body: { stage_id: stage.id!, ...(lostReason ? { lost_reason: lostReason } : {}) } })),
    onMutate: ({ deal, stage }) => {
      const key = ["deals", "board", everyPipeline ? null : pipeline?.id, owner, drill];
      const before = queryClient.getQueryData<Deal[]>(key);
      queryClient.setQueryData<Deal[]>(key, (now) => now?.map((d) => d.id === deal.id ? { ...d, stage_id: stage.id } : d));
      return { before, key };
    },
    onError: (error, _vars, context) => {
      if (context) queryClient.setQueryData(context.key, context.before);
      toasts.show({ color: "red", title: t("moveFailed"), message: (error as Error).message });
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["deals"] }),
  });

  const byStage = useMemo(() => {
    const map = new Map<string, Deal[]>();
    for (const deal of deals.data ?? []) map.set(deal.stage_id ?? "", [...(map.get(deal.stage_id ?? "") ?? []), deal]);
    return map;
  }, [deals.data]);
  const sensors = useSensors(useSensor(PointerSensor, { activationConstraint: { distance: 5 } }), useSensor(KeyboardSensor));

  const onDragEnd = ({ active, over }: DragEndEvent) => {
    const deal = deals.data?.find((d) => d.id === active.id);
    const stage = pipeline?.stages?.find((s) => s.id === over?.id);
    // while the reason is asked nothing else opens or resets the dialog
    if (!deal || !stage || deal.stage_id === stage.id || lost) return;
    if (stage.kind === "lost") {
      setLost({ deal, stage });
    } else {
      move.mutate({ deal, stage });
    }
  };

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("deals")}</Title>
        <Group gap="xs">
          <Select aria-label={t("owner")} placeholder={t("anyone")} value={owner} onChange={setOwner} clearable w={170}
                  data-testid="deal-owner" data={[...(me?.id ? [{ value: me.id, label: t("me") }] : []),
                    ...(users.data ?? []).filter((u) => u.id !== me?.id).map((u) => ({ value: u.id!, label: u.name || u.email || u.id! }))]} />
          {pipelines.data && pipelines.data.length > 1 && (
            <Select aria-label={t("pipeline")} value={pipeline?.id ?? null} onChange={setChosen} w={180}
                    data={pipelines.data.map((p) => ({ value: p.id!, label: p.name ?? p.id! }))} />
          )}
          <SegmentedControl value={view} onChange={setView} data-testid="deal-view"
                            data={[{ value: "board", label: t("board") }, { value: "list", label: t("list") }]} />
        </Group>
      </Group>
      {drilling && (
        <Group gap="xs" data-testid="deal-drill">
          <Text size="sm" fw={600}>{t("filtered")}:</Text>
          {drill.status && <Badge variant="light">{t(`stageKind_${drill.status}`)}</Badge>}
          {(drill.closed_after || drill.closed_before) && (
            <Badge variant="light">{t("closedFromTo", { from: drill.closed_after ? locale.date(drill.closed_after) : "…",
                                                        to: drill.closed_before ? locale.date(new Date(Date.parse(drill.closed_before) - 1).toISOString()) : "…" })}</Badge>
          )}
          {(drill.expected_close_from || drill.expected_close_to) && (
            <Badge variant="light">{t("expectedCloseFromTo", { from: drill.expected_close_from ?? "…",
                                                               to: drill.expected_close_to ? addDays(drill.expected_close_to, -1) : "…" })}</Badge>
          )}
          {drill.currency && <Badge variant="light">{drill.currency}</Badge>}
          <Button size="compact-xs" variant="subtle" onClick={() => { navigate("/deals"); setChosen(null); setOwner(null); setView("board"); }}
                  data-testid="deal-drill-clear">{t("showAllDeals")}</Button>
        </Group>
      )}
      <QueryState loading={pipelines.isLoading || deals.isLoading} error={pipelines.error ?? deals.error}
                  retry={() => { pipelines.refetch(); deals.refetch(); }} />
      {pipeline && deals.data && view === "list" && (
        <Table.ScrollContainer minWidth={360}>
          <Table highlightOnHover data-testid="deal-list">
            <Table.Thead><Table.Tr><Table.Th>{t("title")}</Table.Th><Table.Th>{t("stage")}</Table.Th><Table.Th>{t("amount")}</Table.Th>
              <Table.Th visibleFrom="sm">{t("owner")}</Table.Th><Table.Th visibleFrom="sm">{t("status")}</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {deals.data.map((deal) => (
                <Table.Tr key={deal.id} onClick={() => setOpened(deal)} style={{ cursor: "pointer" }} data-testid={`deal-row-${deal.id}`}>
                  <Table.Td><Anchor component="button" type="button">{deal.title}</Anchor>{deal.rotting && <Badge ml={4} size="xs" color="orange">{t("rotting")}</Badge>}</Table.Td>
                  <Table.Td>{stageOf(deal.stage_id)?.name}</Table.Td>
                  <Table.Td>{money(deal.amount, deal.currency, i18n.language)}</Table.Td>
                  <Table.Td visibleFrom="sm">{ownerName(deal.owner_id)}</Table.Td>
                  <Table.Td visibleFrom="sm">{deal.status}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {pipeline && deals.data && view === "board" && (
        <DndContext sensors={sensors} onDragEnd={onDragEnd}>
          <ScrollArea type="auto" offsetScrollbars>
            <Group align="flex-start" wrap="nowrap" gap="sm" data-testid="board">
              {(pipeline.stages ?? []).map((stage) => (
                <Column key={stage.id} stage={stage} deals={byStage.get(stage.id ?? "") ?? []} language={i18n.language}
                        movable={can("deals:write")} focused={stage.id === focusedStage} onOpen={setOpened} />
              ))}
            </Group>
          </ScrollArea>
        </DndContext>
      )}
      <DealDrawer deal={opened} stages={pipeline?.stages ?? []} onClose={() => setOpened(null)} />
      {lost && <LostReasonDialog key={lost.deal.id} onCancel={() => setLost(null)}
                                 onSubmit={(lostReason) => { move.mutate({ ...lost, lostReason }); setLost(null); }} />}
    </Stack>
  );
}

/** Asks why a deal is lost. Mounted per ask (keyed by the deal), so no re-render of the board
 * can reset what was typed; the field is uncontrolled and read on submit, so the text sent is
 * the text in the field; an empty reason says so next to the field instead of a silent no. */
function LostReasonDialog({ onCancel, onSubmit }: { onCancel: () => void; onSubmit: (reason: string) => void }) {
  const { t } = useTranslation();
  const field = useRef<HTMLInputElement | null>(null);
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal opened onClose={onCancel} title={t("lostReason")}>
      <form noValidate onSubmit={(e) => {
        e.preventDefault();
        const reason = field.current?.value.trim() ?? "";
        if (!reason) { setError(t("lostReasonRequired")); field.current?.focus(); return; }
        onSubmit(reason);
      }}>
        <Stack>
          <TextInput ref={field} data-autofocus required placeholder={t("lostReasonPlaceholder")} defaultValue=""
                     error={error} onChange={() => setError(null)} data-testid="lost-reason" />
          <Group justify="flex-end">
            <Button variant="default" onClick={onCancel}>{t("cancel")}</Button>
            <Button type="submit" color="red">{t("markLost")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** A deal with its contact and its stage history. */
function DealDrawer({ deal: opened, stages, onClose }: { deal: Deal | null; stages: Stage[]; onClose: () => void }) {
  const { t } = useTranslation();
  const locale = useLocale();
  // the deal as it is now (line items change its amount)
  const fresh = useQuery({
    queryKey: ["deals", "one", opened?.id],
    enabled: !!opened?.id,
    queryFn: async () => ok(await api.GET("/api/v1/deals/{deal_id}", { params: { path: { deal_id: opened!.id! } } })),
  });
  const deal = opened && fresh.data?.id === opened.id ? fresh.data : opened;
  // the board's card shows what the drawer shows (amount after line items, stage, title)
  const queryClient = useQueryClient();
  useEffect(() => {
    const one = fresh.data;
    if (!one?.id) return;
    queryClient.setQueriesData<Deal[]>({ queryKey: ["deals", "board"] },
      (list) => list?.map((d) => (d.id === one.id ? newest(d, one) : d)));
  }, [fresh.data, queryClient]);
  const history = useQuery({
    queryKey: ["deals", "history", deal?.id],
    enabled: !!deal?.id,
    queryFn: async () => ok(await api.GET("/api/v1/deals/{deal_id}/history", { params: { path: { deal_id: deal!.id! } } })).items ?? [],
  });
  const stageName = (id?: string | null) => stages.find((s) => s.id === id)?.name ?? "—";
  return (
    <Drawer opened={!!deal} onClose={onClose} position="right" title={deal?.title} data-testid="deal-drawer">
      {deal && (
        <Stack>
          <Text fw={700} fz="xl" data-testid="deal-amount">{locale.money(deal.amount, deal.currency)}</Text>
          <Text size="sm">{t("stage")}: {stageName(deal.stage_id)} · {deal.status}</Text>
          {deal.contact_id && <Anchor component={Link} to={`/contacts/${deal.contact_id}`}>{t("openContact")}</Anchor>}
          {deal.lost_reason && <Text size="sm" c="red">{t("lostReason")} {deal.lost_reason}</Text>}
          <DealSales deal={deal} />
          <Title order={5}>{t("history")}</Title>
          <Timeline bulletSize={12} data-testid="deal-history">
            {(history.data ?? []).map((h) => (
              <Timeline.Item key={h.id} title={`${h.from_stage_id ? stageName(h.from_stage_id) + " → " : ""}${stageName(h.to_stage_id)}`}>
                <Text size="xs" c="dimmed">{locale.dateTime(h.at)}{h.lost_reason ? ` · ${h.lost_reason}` : ""}</Text>
              </Timeline.Item>
            ))}
          </Timeline>
        </Stack>
      )}
    </Drawer>
  );
}
