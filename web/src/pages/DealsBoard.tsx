import { useEffect, useMemo, useRef, useState } from "react";
import { DndContext, PointerSensor, KeyboardSensor, useDraggable, useDroppable, useSensor, useSensors,
         type DragEndEvent } from "@dnd-kit/core";
import { Badge, Button, Card, Group, Modal, ScrollArea, Select, Stack, Text, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { useSearchParams } from "react-router-dom";
import { api, ok, type Deal, type Stage } from "../api/client";
import { QueryState } from "../components/QueryState";
import { money, totalsByCurrency } from "../lib/format";
import { usePermissions } from "../lib/me";


function DealCard({ deal, language, movable }: { deal: Deal; language: string; movable: boolean }) {
  const { attributes, listeners, setNodeRef, transform, isDragging } = useDraggable({ id: deal.id ?? "", disabled: !movable });
  const style = transform ? { transform: `translate3d(${transform.x}px, ${transform.y}px, 0)`, zIndex: 10 } : undefined;
  return (
    <Card ref={setNodeRef} withBorder p="xs" style={{ ...style, opacity: isDragging ? 0.7 : 1, cursor: movable ? "grab" : "default" }}
          {...listeners} {...attributes} data-testid={`deal-${deal.id}`}>
      <Text size="sm" fw={600}>{deal.title}</Text>
      <Group gap={4} justify="space-between">
        <Text size="xs" c="dimmed">{money(deal.amount, deal.currency, language)}</Text>
        {deal.rotting && <Badge size="xs" color="orange">⏱</Badge>}
      </Group>
    </Card>
  );
}

function Column({ stage, deals, language, movable, focused }: { stage: Stage; deals: Deal[]; language: string; movable: boolean; focused: boolean }) {
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
        {deals.map((deal) => <DealCard key={deal.id} deal={deal} language={language} movable={movable} />)}
      </Stack>
    </Card>
  );
}

/** One column per stage; drag a deal to move it (a lost stage asks the reason). */
export function DealsBoard() {
  const { t, i18n } = useTranslation();
  const { can } = usePermissions();
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
  const deals = useQuery({
    queryKey: ["deals", "board", pipeline?.id],
    enabled: !!pipeline?.id,
    queryFn: async () => ok(await api.GET("/api/v1/deals", {
      params: { query: { pipeline_id: pipeline!.id, limit: 500 } } })).items ?? [],
  });
  const [lost, setLost] = useState<{ deal: Deal; stage: Stage } | null>(null);
  const [reason, setReason] = useState("");

  const move = useMutation({
    mutationFn: async ({ deal, stage, lostReason }: { deal: Deal; stage: Stage; lostReason?: string }) =>
      ok(await api.POST("/api/v1/deals/{deal_id}/move", { params: { path: { deal_id: deal.id! } },
        body: { stage_id: stage.id!, ...(lostReason ? { lost_reason: lostReason } : {}) } })),
    onMutate: ({ deal, stage }) => {
      const key = ["deals", "board", pipeline?.id];
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
    if (!deal || !stage || deal.stage_id === stage.id) return;
    if (stage.kind === "lost") {
      setReason("");
      setLost({ deal, stage });
    } else {
      move.mutate({ deal, stage });
    }
  };

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("deals")}</Title>
        {pipelines.data && pipelines.data.length > 1 && (
          <Select aria-label={t("pipeline")} value={pipeline?.id ?? null} onChange={setChosen}
                  data={pipelines.data.map((p) => ({ value: p.id!, label: p.name ?? p.id! }))} />
        )}
      </Group>
      <QueryState loading={pipelines.isLoading || deals.isLoading} error={pipelines.error ?? deals.error}
                  retry={() => { pipelines.refetch(); deals.refetch(); }} />
      {pipeline && deals.data && (
        <DndContext sensors={sensors} onDragEnd={onDragEnd}>
          <ScrollArea type="auto" offsetScrollbars>
            <Group align="flex-start" wrap="nowrap" gap="sm" data-testid="board">
              {(pipeline.stages ?? []).map((stage) => (
                <Column key={stage.id} stage={stage} deals={byStage.get(stage.id ?? "") ?? []} language={i18n.language}
                        movable={can("deals:write")} focused={stage.id === focusedStage} />
              ))}
            </Group>
          </ScrollArea>
        </DndContext>
      )}
      <Modal opened={!!lost} onClose={() => setLost(null)} title={t("lostReason")}>
        <form onSubmit={(e) => {
          e.preventDefault();
          if (lost && reason.trim()) move.mutate({ ...lost, lostReason: reason.trim() });
          setLost(null);
        }}>
          <Stack>
            <TextInput data-autofocus required placeholder={t("lostReasonPlaceholder")} value={reason}
                       onChange={(e) => setReason(e.currentTarget.value)} data-testid="lost-reason" />
            <Group justify="flex-end">
              <Button variant="default" onClick={() => setLost(null)}>{t("cancel")}</Button>
              <Button type="submit" color="red">{t("markLost")}</Button>
            </Group>
          </Stack>
        </form>
      </Modal>
    </Stack>
  );
}
