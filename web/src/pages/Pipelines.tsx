import { useEffect, useState } from "react";
import { closestCenter, DndContext, KeyboardSensor, PointerSensor, useSensor, useSensors, type DragEndEvent } from "@dnd-kit/core";
import { SortableContext, sortableKeyboardCoordinates, useSortable, verticalListSortingStrategy } from "@dnd-kit/sortable";
import { CSS } from "@dnd-kit/utilities";
import { ActionIcon, Alert, Button, Card, Group, NumberInput, Select, Stack, Text, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Pipeline } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { usePermissions } from "../lib/me";
import { move, stageProblems, type StageDraft } from "../lib/stages";

let counter = 0;
const newKey = () => `new-${++counter}`;
const draftsOf = (pipeline?: Pipeline): StageDraft[] => pipeline?.stages?.map((s) => ({
  key: s.id!, id: s.id, name: s.name ?? "", kind: (s.kind ?? "open") as StageDraft["kind"],
  probability: s.probability ?? null, rotting_days: s.rotting_days ?? null })) ?? [
  { key: newKey(), name: "", kind: "open", probability: null, rotting_days: null },
  { key: newKey(), name: "", kind: "won", probability: null, rotting_days: null },
  { key: newKey(), name: "", kind: "lost", probability: null, rotting_days: null }];

function StageRow({ stage, index, count, onChange, onMove, onRemove }: {
  stage: StageDraft; index: number; count: number; onChange: (s: StageDraft) => void; onMove: (to: number) => void; onRemove: () => void }) {
  const { t } = useTranslation();
  const { attributes, listeners, setNodeRef, transform, transition } = useSortable({ id: stage.key });
  return (
    <Group ref={setNodeRef} wrap="nowrap" gap="xs" align="flex-end" data-testid={`stage-row-${index}`}
           style={{ transform: CSS.Transform.toString(transform), transition }}>
      <ActionIcon variant="subtle" {...attributes} {...listeners} aria-label={t("dragToReorder")} mb={4} style={{ cursor: "grab" }}>⋮⋮</ActionIcon>
      <TextInput label={index === 0 ? t("name") : undefined} value={stage.name} required style={{ flex: 2 }}
                 onChange={(e) => onChange({ ...stage, name: e.currentTarget.value })} data-testid={`stage-name-${index}`} />
      <Select label={index === 0 ? t("kind") : undefined} value={stage.kind} allowDeselect={false} w={110}
              data={["open", "won", "lost"].map((k) => ({ value: k, label: t(`stageKind_${k}`) }))}
              onChange={(v) => v && onChange({ ...stage, kind: v as StageDraft["kind"] })} />
      <NumberInput label={index === 0 ? t("probability") : undefined} value={stage.probability ?? ""} min={0} max={100} w={100} suffix="%"
                   onChange={(v) => onChange({ ...stage, probability: v === "" ? null : Number(v) })} />
      <NumberInput label={index === 0 ? t("rottingDays") : undefined} value={stage.rotting_days ?? ""} min={1} w={110}
                   onChange={(v) => onChange({ ...stage, rotting_days: v === "" ? null : Number(v) })} />
      <ActionIcon variant="subtle" aria-label={t("moveUp")} disabled={index === 0} onClick={() => onMove(index - 1)} mb={4}>↑</ActionIcon>
      <ActionIcon variant="subtle" aria-label={t("moveDown")} disabled={index === count - 1} onClick={() => onMove(index + 1)} mb={4}>↓</ActionIcon>
      <ActionIcon variant="subtle" color="red" aria-label={t("remove")} onClick={onRemove} mb={4}>✕</ActionIcon>
    </Group>
  );
}

/** Pipelines and their stages: drag (or ↑/↓) to reorder, probabilities, rotting days; a
 * removed stage holding deals says where they go. */
export function Pipelines() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const pipelines = useQuery({
    queryKey: ["pipelines"],
    queryFn: async () => ok(await api.GET("/api/v1/pipelines", {})).items ?? [],
  });
  const [chosen, setChosen] = useState<string | null>(null);
  const pipeline = chosen === "new" ? undefined : pipelines.data?.find((p) => p.id === chosen) ?? pipelines.data?.[0];
  const [name, setName] = useState("");
  const [stages, setStages] = useState<StageDraft[]>([]);
  const [moveTo, setMoveTo] = useState<Record<string, string>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  useEffect(() => {
    setName(pipeline?.name ?? ""); setStages(draftsOf(pipeline)); setMoveTo({}); setErrors({});
  }, [pipeline?.id, pipeline?.version, chosen]); // eslint-disable-line react-hooks/exhaustive-deps
  const removed = (pipeline?.stages ?? []).filter((s) => !stages.some((d) => d.id === s.id));
  const problems = stageProblems(stages);
  const save = useMutation({
    mutationFn: async () => {
      const body = { name: name.trim(), stages: stages.map(({ id, name: n, kind, probability, rotting_days }) =>
        ({ ...(id ? { id } : {}), name: n.trim(), kind, probability, rotting_days })) };
      if (!pipeline) return ok(await api.POST("/api/v1/pipelines", { body }));
      const moves = Object.fromEntries(removed.map((s) => [s.id!, moveTo[s.id!] ?? stages.find((d) => d.id && d.kind === "open")?.id ?? ""]).filter(([, v]) => v));
      return ok(await api.PATCH("/api/v1/pipelines/{pipeline_id}", { params: { path: { pipeline_id: pipeline.id! } },
        body: { ...body, ...(Object.keys(moves).length ? { move_deals_to: moves } : {}) } }));
    },
    onSuccess: (saved) => {
      toasts.show({ color: "green", message: t("saved") });
      queryClient.invalidateQueries({ queryKey: ["pipelines"] });
      setChosen(saved.id ?? null);
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const sensors = useSensors(useSensor(PointerSensor, { activationConstraint: { distance: 5 } }),
                             useSensor(KeyboardSensor, { coordinateGetter: sortableKeyboardCoordinates }));
  const onDragEnd = ({ active, over }: DragEndEvent) => {
    if (!over) return;
    setStages((now) => move(now, now.findIndex((s) => s.key === active.id), now.findIndex((s) => s.key === over.id)));
  };
  const writable = can("pipelines:write");
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>{t("pipelines")}</Title>
        <Group>
          <Select value={pipeline?.id ?? (chosen === "new" ? "new" : null)} onChange={setChosen} allowDeselect={false} aria-label={t("pipeline")}
                  data={[...(pipelines.data ?? []).map((p) => ({ value: p.id!, label: p.name ?? p.id! })),
                         ...(writable ? [{ value: "new", label: `+ ${t("newPipeline")}` }] : [])]} data-testid="pipeline-choice" />
        </Group>
      </Group>
      <QueryState loading={pipelines.isLoading} error={pipelines.error} retry={() => pipelines.refetch()} />
      {!pipelines.isLoading && (
        <Card withBorder>
          <form onSubmit={(e) => { e.preventDefault(); if (!problems.length) save.mutate(); }}>
            <fieldset disabled={!writable} style={{ border: 0, padding: 0, margin: 0 }}>
              <Stack>
                <TextInput label={t("name")} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name}
                           data-testid="pipeline-name" />
                <DndContext sensors={sensors} collisionDetection={closestCenter} onDragEnd={onDragEnd}>
                  <SortableContext items={stages.map((s) => s.key)} strategy={verticalListSortingStrategy}>
                    <Stack gap="xs" data-testid="stage-list">
                      {stages.map((stage, i) => (
                        <StageRow key={stage.key} stage={stage} index={i} count={stages.length}
                                  onChange={(s) => setStages((now) => now.map((x) => x.key === s.key ? s : x))}
                                  onMove={(to) => setStages((now) => move(now, i, to))}
                                  onRemove={() => setStages((now) => now.filter((x) => x.key !== stage.key))} />
                      ))}
                    </Stack>
                  </SortableContext>
                </DndContext>
                <Group>
                  <Button variant="light" size="xs" data-testid="add-stage"
                          onClick={() => setStages((now) => { const at = Math.max(0, now.findIndex((s) => s.kind !== "open"));
                            const next = [...now]; next.splice(at === -1 ? now.length : at, 0, { key: newKey(), name: "", kind: "open", probability: null, rotting_days: null }); return next; })}>
                    + {t("addStage")}
                  </Button>
                </Group>
                {removed.length > 0 && (
                  <Stack gap="xs">
                    <Text size="sm" fw={600}>{t("removedStages")}</Text>
                    {removed.map((s) => (
                      <Select key={s.id} label={t("moveDealsOf", { stage: s.name })} value={moveTo[s.id!] ?? null} w={320}
                              onChange={(v) => v && setMoveTo((m) => ({ ...m, [s.id!]: v }))}
                              data={stages.filter((d) => d.id).map((d) => ({ value: d.id!, label: d.name }))} />
                    ))}
                  </Stack>
                )}
                {problems.map((p) => <Text key={p} c="red" size="sm">{t(p)}</Text>)}
                {(errors._ || errors.stages) && <Alert color="red">{errors._ ?? errors.stages}</Alert>}
                {writable && (
                  <Group justify="flex-end">
                    <Button type="submit" loading={save.isPending} disabled={problems.length > 0} data-testid="pipeline-save">{t("save")}</Button>
                  </Group>
                )}
              </Stack>
            </fieldset>
          </form>
        </Card>
      )}
    </Stack>
  );
}
