import { useState } from "react";
import { ActionIcon, Alert, Anchor, Badge, Button, Card, Checkbox, Code, Grid, Group, NumberInput, SegmentedControl, Select, Stack,
         Switch, Table, Tabs, Text, Textarea, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { flatFieldErrors } from "../components/TaskDialogs";
import { useLocale, usePermissions } from "../lib/me";
import { actionOf, addGroup, addTest, blankAction, canNest, kindsOf, moveNode, placeOf as placeLabel, readableReason, removeNode, setMatch, toApi, treeOf,
         updateTest, type ActionRow, type CondNode, type GroupNode, type Match, OPS, ACTION_TYPES } from "../lib/rules";

type Rule = Schemas["RuleOut"];
type TriggerType = Schemas["TriggerIn"]["type"];
type Draft = {
  name: string; description: string; enabled: boolean; logSkips: boolean;
  trigger: { type: TriggerType; event: string; days: number; record: "contact" | "deal"; field: string; when: "before" | "after"; annual: boolean };
  conditions: GroupNode; actions: ActionRow[];
};

function draftOf(rule: Rule | null): Draft {
  const trigger = (rule?.trigger ?? {}) as Record<string, unknown>;
  return {
    name: rule?.name ?? "", description: rule?.description ?? "", enabled: rule?.enabled ?? false, logSkips: rule?.log_skips ?? true,
    trigger: { type: (trigger.type as TriggerType) ?? "event", event: (trigger.event as string) ?? "", days: (trigger.days as number) ?? 3,
               record: (trigger.record as "contact") ?? "contact", field: (trigger.field as string) ?? "birthday",
               when: (trigger.when as "after") ?? "after", annual: !!trigger.annual },
    conditions: treeOf(rule?.conditions),
    actions: (rule?.actions as Record<string, unknown>[] | undefined)?.map(actionOf) ?? [blankAction("notify_user")],
  };
}

function triggerBody(d: Draft["trigger"]): Schemas["TriggerIn"] {
  if (d.type === "event") return { type: "event", event: d.event } as Schemas["TriggerIn"];
  if (d.type === "date_field") return { type: "date_field", record: d.record, field: d.field, when: d.when, days: d.days, annual: d.annual };
  return { type: d.type, days: d.days } as Schemas["TriggerIn"];
}

/** Which records the rule would have hit over the last days, and why not where it would not. */
function DryRun({ rule }: { rule: Rule }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const [days, setDays] = useState<number | string>(7);
  const run = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/automation/rules/{rule_id}/dry-run", {
      params: { path: { rule_id: rule.id! } }, body: { days: Number(days) || 7, limit: 100 } })),
  });
  return (
    <Stack gap="xs" data-testid="rule-dry-run">
      <Group align="flex-end">
        <NumberInput label={t("arDays")} value={days} onChange={setDays} min={1} max={30} w={120} />
        <Button onClick={() => run.mutate()} loading={run.isPending} data-testid="rule-dry-run-go">{t("arDryRun")}</Button>
      </Group>
      {run.error && <Alert color="red">{(run.error as Error).message}</Alert>}
      {run.data && (
        <>
          <Text data-testid="dry-run-summary">{t("arDryRunSummary", { examined: run.data.examined ?? 0, fire: run.data.would_fire ?? 0 })}</Text>
          {!!run.data.items?.length && (
            <Table.ScrollContainer minWidth={320}>
              <Table data-testid="dry-run-table">
                <Table.Thead><Table.Tr><Table.Th>{t("arRecord")}</Table.Th><Table.Th>{t("arWouldFire")}</Table.Th>
                  <Table.Th visibleFrom="sm">{t("arWhen")}</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {run.data.items.map((hit, i) => (
                    <Table.Tr key={`${hit.record_id}-${hit.occurrence}-${i}`}>
                      <Table.Td><RecordLink type={hit.record_type} id={hit.record_id} /></Table.Td>
                      <Table.Td>{hit.would_fire ? <Badge color="green" variant="light">{t("yes")}</Badge>
                        : <Text size="xs" c="dimmed">{hit.reason ? readableReason(hit.reason) : t("no")}</Text>}</Table.Td>
                      <Table.Td visibleFrom="sm">{locale.dateTime(hit.at)}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </>
      )}
    </Stack>
  );
}

function RecordLink({ type, id }: { type?: string | null; id?: string | null }) {
  if (!id) return <>—</>;
  const path = type === "contact" ? `/contacts/${id}` : type === "company" ? `/companies/${id}` : null;
  const label = `${type ?? ""} ${id.slice(-6)}`;
  return path ? <Anchor component={Link} to={path} size="sm">{label}</Anchor> : <Text size="sm">{label}</Text>;
}

const RUN_COLOR: Record<string, string> = { done: "green", failed: "red", skipped: "gray", scheduled: "blue", running: "blue",
                                            retry: "yellow", canceled: "gray", stopped: "orange" };

/** The rule's run log: fired, skipped (which condition failed), what each action did. */
function Runs({ rule }: { rule: Rule }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const runs = useQuery({
    queryKey: ["automation", "runs", rule.id],
    refetchInterval: 10_000,
    queryFn: async () => ok(await api.GET("/api/v1/automation/rules/{rule_id}/runs", {
      params: { path: { rule_id: rule.id! }, query: { limit: 50 } } })).items ?? [],
  });
  return (
    <Stack gap="xs" data-testid="rule-runs">
      <QueryState loading={runs.isLoading} error={runs.error} retry={() => runs.refetch()} />
      {runs.data && !runs.data.length && <Text c="dimmed" size="sm">{t("arNoRuns")}</Text>}
      {!!runs.data?.length && (
        <Table.ScrollContainer minWidth={320}>
          <Table>
            <Table.Thead><Table.Tr><Table.Th>{t("status")}</Table.Th><Table.Th>{t("arRecord")}</Table.Th>
              <Table.Th visibleFrom="sm">{t("arWhen")}</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {runs.data.map((run) => (
                <Table.Tr key={run.id}>
                  <Table.Td><Badge color={RUN_COLOR[run.state ?? ""] ?? "gray"} variant="light">{t(`arState_${run.state}`, { defaultValue: run.state })}</Badge>
                    {run.reason && <Text size="xs" c="dimmed" data-testid="run-reason">{readableReason(run.reason)}</Text>}
                    {(run.actions ?? []).map((a, i) => {
                      const result = a as Record<string, unknown>;
                      return <Text key={i} size="xs">{String(result.type ?? "")}: {String(result.state ?? result.status ?? "")}
                        {result.error ? ` · ${String(result.error)}` : ""}</Text>;
                    })}</Table.Td>
                  <Table.Td><RecordLink type={run.record_type} id={run.record_id} /></Table.Td>
                  <Table.Td visibleFrom="sm">{locale.dateTime(run.created_at)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}

type Edit = (root: GroupNode) => GroupNode;

/** One group of the rule's conditions (all / any of its tests and groups), nested up to the
 * API's depth; each test shows its place (#2.1), the one the run log names when it failed. */
function ConditionGroup({ node, path, paths, errors, fields, writable, onChange }: {
  node: GroupNode; path: number[]; paths: Record<string, string>; errors: Record<string, string>; fields: string[];
  writable: boolean; onChange: (edit: Edit) => void;
}) {
  const { t } = useTranslation();
  const where = (n: CondNode) => (paths[n.id] === undefined ? undefined : `conditions${paths[n.id] ? `.${paths[n.id]}` : ""}`);
  const errorOf = (n: CondNode, field?: string) => {
    const at = where(n);
    if (at === undefined) return undefined;
    return field ? errors[`${at}.${field}`] : errors[at] ?? (n.kind === "group" ? errors[`${at}.${n.match}`] : undefined);
  };
  const nested = path.length > 0;
  const testId = `rule-group-${path.join("-") || "root"}`;
  return (
    <Stack gap={6} data-testid={testId} data-match={node.match}
           style={nested ? { borderInlineStart: `3px solid var(--mantine-color-${node.match === "any" ? "orange" : "blue"}-4)`,
                             paddingInlineStart: 8 } : undefined}>
      <Group gap={4} wrap="wrap" justify="space-between">
        <Group gap={4} wrap="nowrap">
        {nested && paths[node.id] !== undefined && <Badge variant="light" color="gray" size="sm">{placeLabel(paths[node.id])}</Badge>}
        <SegmentedControl size="xs" value={node.match} disabled={!writable} data-testid={`${testId}-match`}
                          onChange={(v) => onChange((root) => setMatch(root, path, v as Match))}
                          data={[{ value: "all", label: t("arAll") }, { value: "any", label: t("arAny") }]} />
        </Group>
        {writable && nested && (
          <Group gap={2}>
            <ActionIcon variant="subtle" size="sm" aria-label={t("arMoveUp")} onClick={() => onChange((root) => moveNode(root, path, -1))}>↑</ActionIcon>
            <ActionIcon variant="subtle" size="sm" aria-label={t("arMoveDown")} onClick={() => onChange((root) => moveNode(root, path, 1))}>↓</ActionIcon>
            <ActionIcon variant="subtle" color="red" size="sm" aria-label={t("arRemoveGroup")} data-testid={`${testId}-remove`}
                        onClick={() => onChange((root) => removeNode(root, path))}>✕</ActionIcon>
          </Group>
        )}
      </Group>
      {errorOf(node) && <Text c="red" size="xs">{errorOf(node)}</Text>}
      {node.children.map((child, i) => {
        const at = [...path, i];
        if (child.kind === "group") {
          return <ConditionGroup key={child.id} node={child} path={at} paths={paths} errors={errors} fields={fields}
                                 writable={writable} onChange={onChange} />;
        }
        const place = paths[child.id];
        return (
          <Group key={child.id} gap={4} wrap="wrap" align="flex-start" data-testid={`rule-condition-${at.join("-")}`}>
            <Badge variant="light" color="gray" size="sm" mt={8} miw={36} title={t("arPlaceHint")}>{place !== undefined ? placeLabel(place) : "·"}</Badge>
            <Select aria-label={t("arField")} placeholder={t("arField")} searchable value={child.field || null} w={{ base: "100%", xs: 200 }}
                    disabled={!writable} error={errorOf(child, "field")}
                    data={[...new Set([...fields, ...(child.field ? [child.field] : [])])]}
                    onChange={(v) => onChange((root) => updateTest(root, at, { field: v ?? "" }))}
                    onSearchChange={(q) => !fields.length && q && onChange((root) => updateTest(root, at, { field: q }))}
                    data-testid="rule-condition-field" />
            <Select aria-label={t("arOp")} value={child.op} allowDeselect={false} w={150} disabled={!writable} error={errorOf(child, "op")}
                    data={OPS.map((op) => ({ value: op, label: t(`arOp_${op}`) }))}
                    onChange={(v) => v && onChange((root) => updateTest(root, at, { op: v }))} data-testid="rule-condition-op" />
            {child.op !== "empty" && child.op !== "not_empty" && (
              <TextInput aria-label={t("arValue")} placeholder={t("arValue")} value={child.value} w={160} disabled={!writable}
                         error={errorOf(child, "value") ?? errorOf(child)}
                         onChange={(e) => { const value = e.currentTarget.value; onChange((root) => updateTest(root, at, { value })); }}
                         data-testid="rule-condition-value" />
            )}
            {writable && <ActionIcon variant="subtle" color="red" mt={6} aria-label={t("remove")} data-testid="rule-condition-remove"
                                     onClick={() => onChange((root) => removeNode(root, at))}>✕</ActionIcon>}
          </Group>
        );
      })}
      {writable && (
        <Group gap={4}>
          <Button size="compact-xs" variant="subtle" data-testid={nested ? `${testId}-add-condition` : "rule-add-condition"}
                  onClick={() => onChange((root) => addTest(root, path))}>+ {t("arAddCondition")}</Button>
          {canNest(path) && <Button size="compact-xs" variant="subtle" data-testid={nested ? `${testId}-add-group` : "rule-add-group"}
                                    onClick={() => onChange((root) => addGroup(root, path, node.match === "all" ? "any" : "all"))}>
            + {t("arAddGroup")}</Button>}
        </Group>
      )}
    </Stack>
  );
}

function RuleEditor({ rule, onSaved }: { rule: Rule | null; onSaved: (rule: Rule) => void }) {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const writable = can("automation:write");
  const [draft, setDraft] = useState<Draft>(() => draftOf(rule));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setTrigger = (value: Partial<Draft["trigger"]>) => set("trigger", { ...draft.trigger, ...value });
  const triggers = useQuery({
    queryKey: ["automation", "triggers"],
    staleTime: 10 * 60_000,
    queryFn: async () => ok(await api.GET("/api/v1/automation/triggers", {})).items ?? [],
  });
  const pipelines = useQuery({
    queryKey: ["pipelines"],
    queryFn: async () => ok(await api.GET("/api/v1/pipelines", {})).items ?? [],
  });
  const stages = (pipelines.data ?? []).flatMap((p) => (p.stages ?? []).map((s) => ({ value: s.id!, label: `${p.name} · ${s.name}` })));
  const eventFields = triggers.data?.find((x) => x.event === draft.trigger.event)?.fields ?? [];
  const kinds = kindsOf(triggers.data);
  const save = useMutation({
    mutationFn: async () => {
      const body = {
        name: draft.name.trim(), description: draft.description.trim() || undefined, enabled: draft.enabled, log_skips: draft.logSkips,
        trigger: triggerBody(draft.trigger),
        // the editor's rows as the API's typed unions (the API checks each one: 422 by field)
        conditions: toApi(draft.conditions, kinds).conditions as Schemas["RuleIn"]["conditions"],
        actions: draft.actions.map((a) => a.body(kinds)) as Schemas["RuleIn"]["actions"],
      };
      return rule?.id
        ? ok(await api.PATCH("/api/v1/automation/rules/{rule_id}", { params: { path: { rule_id: rule.id } }, body }))
        : ok(await api.POST("/api/v1/automation/rules", { body }));
    },
    onSuccess: (saved) => {
      setErrors({});
      queryClient.setQueryData<Rule[]>(["automation", "rules"], (list) =>
        list && (list.some((r) => r.id === saved.id) ? list.map((r) => (r.id === saved.id ? saved : r)) : [saved, ...list]));
      queryClient.invalidateQueries({ queryKey: ["automation", "rules"] });
      toasts.show({ color: "green", message: t("saved") });
      onSaved(saved);
    },
    onError: (error) => setErrors(flatFieldErrors(error)),
  });
  const paths = toApi(draft.conditions).paths;
  const setAction = (i: number, row: ActionRow) => set("actions", draft.actions.map((a, j) => (j === i ? row : a)));
  return (
    <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }} data-testid="rule-editor">
      <Stack gap="sm">
        <TextInput label={t("name")} required value={draft.name} error={errors.name} disabled={!writable}
                   onChange={(e) => set("name", e.currentTarget.value)} data-testid="rule-name" />
        <Textarea label={t("description")} autosize minRows={1} value={draft.description} disabled={!writable}
                  onChange={(e) => set("description", e.currentTarget.value)} />
        <Card withBorder padding="sm">
          <Stack gap="xs">
            <Text fw={600} size="sm">{t("arWhenTrigger")}</Text>
            <Select value={draft.trigger.type} allowDeselect={false} disabled={!writable} data-testid="rule-trigger-type" aria-label={t("arTrigger")}
                    data={(["event", "in_stage", "no_contact", "date_field"] as TriggerType[]).map((v) => ({ value: v, label: t(`arTrigger_${v}`) }))}
                    onChange={(v) => v && setTrigger({ type: v as TriggerType })} />
            {draft.trigger.type === "event" && (
              <Select label={t("arEvent")} searchable value={draft.trigger.event || null} disabled={!writable} error={errors.trigger}
                      data={(triggers.data ?? []).map((x) => ({ value: x.event!, label: x.description ? `${x.event} — ${x.description}` : x.event! }))}
                      onChange={(v) => setTrigger({ event: v ?? "" })} data-testid="rule-event" />
            )}
            {draft.trigger.type === "date_field" && (
              <Group grow>
                <Select label={t("arRecordKind")} value={draft.trigger.record} allowDeselect={false} disabled={!writable}
                        data={[{ value: "contact", label: t("entity_contact") }, { value: "deal", label: t("entity_deal") }]}
                        onChange={(v) => v && setTrigger({ record: v as "contact" })} />
                <TextInput label={t("arDateField")} value={draft.trigger.field} disabled={!writable} onChange={(e) => setTrigger({ field: e.currentTarget.value })} />
                <Select label={t("arBeforeAfter")} value={draft.trigger.when} allowDeselect={false} disabled={!writable}
                        data={[{ value: "before", label: t("arBefore") }, { value: "after", label: t("arAfter") }]}
                        onChange={(v) => v && setTrigger({ when: v as "after" })} />
              </Group>
            )}
            {draft.trigger.type !== "event" && (
              <Group align="flex-end">
                <NumberInput label={t(`arDays_${draft.trigger.type}`)} value={draft.trigger.days} min={0} max={3650} w={180} disabled={!writable}
                             onChange={(v) => setTrigger({ days: Number(v) || 0 })} error={errors.trigger} data-testid="rule-days" />
                {draft.trigger.type === "date_field" && <Checkbox label={t("arAnnual")} checked={draft.trigger.annual} mb={8}
                                                                   onChange={(e) => setTrigger({ annual: e.currentTarget.checked })} />}
              </Group>
            )}
          </Stack>
        </Card>
        <Card withBorder padding="sm">
          <Stack gap="xs">
            <Text fw={600} size="sm">{t("arIf")}</Text>
            {!draft.conditions.children.length && <Text size="xs" c="dimmed">{t("arNoConditions")}</Text>}
            <ConditionGroup node={draft.conditions} path={[]} paths={paths} errors={errors} fields={eventFields} writable={writable}
                            onChange={(edit) => setDraft((d) => ({ ...d, conditions: edit(d.conditions) }))} />
            {errors.conditions && <Text c="red" size="sm" data-testid="rule-conditions-error">{errors.conditions}</Text>}
          </Stack>
        </Card>
        <Card withBorder padding="sm">
          <Stack gap="xs">
            <Text fw={600} size="sm">{t("arThen")}</Text>
            {draft.actions.map((a, i) => (
              <Group key={i} gap={4} wrap="wrap" align="flex-end" data-testid={`rule-action-${i}`}>
                <Select aria-label={t("arAction")} value={a.type} allowDeselect={false} w={170} disabled={!writable || a.raw !== undefined}
                        data={[...ACTION_TYPES, ...(a.raw !== undefined ? [a.type] : [])].map((v) => ({ value: v, label: t(`arAction_${v}`, { defaultValue: v }) }))}
                        onChange={(v) => v && setAction(i, blankAction(v))} data-testid="rule-action-type" />
                {a.raw !== undefined
                  ? <Code block style={{ flex: 1 }}>{JSON.stringify(a.raw)}</Code>
                  : a.params.map((p) => p.kind === "stage"
                    ? <Select key={p.name} aria-label={t(`arParam_${p.name}`)} placeholder={t(`arParam_${p.name}`)} data={stages} w={220}
                              value={(a.values[p.name] as string) || null} disabled={!writable}
                              onChange={(v) => setAction(i, a.with(p.name, v ?? ""))} />
                    : p.kind === "number"
                      ? <NumberInput key={p.name} aria-label={t(`arParam_${p.name}`)} placeholder={t(`arParam_${p.name}`)} w={140}
                                     value={(a.values[p.name] as number) ?? ""} disabled={!writable}
                                     onChange={(v) => setAction(i, a.with(p.name, typeof v === "number" ? v : undefined))} />
                      : <TextInput key={p.name} aria-label={t(`arParam_${p.name}`)} placeholder={t(`arParam_${p.name}`)} w={220}
                                   value={(a.values[p.name] as string) ?? ""} disabled={!writable} data-testid={`rule-action-${p.name}`}
                                   onChange={(e) => setAction(i, a.with(p.name, e.currentTarget.value))} />)}
                {writable && draft.actions.length > 1 && <ActionIcon variant="subtle" color="red" mb={4} aria-label={t("remove")}
                                         onClick={() => set("actions", draft.actions.filter((_, j) => j !== i))}>✕</ActionIcon>}
              </Group>
            ))}
            {errors.actions && <Text c="red" size="sm">{errors.actions}</Text>}
            {writable && <Button size="compact-xs" variant="subtle" w="fit-content"
                                 onClick={() => set("actions", [...draft.actions, blankAction("create_task")])}>+ {t("arAddAction")}</Button>}
          </Stack>
        </Card>
        <Group>
          <Switch label={t("arEnabled")} description={t("arEnabledHint")} checked={draft.enabled} disabled={!writable}
                  onChange={(e) => set("enabled", e.currentTarget.checked)} data-testid="rule-enabled" />
          <Switch label={t("arLogSkips")} checked={draft.logSkips} disabled={!writable} onChange={(e) => set("logSkips", e.currentTarget.checked)} />
        </Group>
        {(errors._ || errors.trigger) && <Alert color="red">{errors._ || errors.trigger}</Alert>}
        {writable && (
          <Group justify="flex-end">
            <Button type="submit" loading={save.isPending} disabled={!draft.name.trim()} data-testid="rule-save">{rule ? t("save") : t("arCreate")}</Button>
          </Group>
        )}
      </Stack>
    </form>
  );
}

/** Settings → Automation: rules (trigger, conditions, actions), each with a dry run over the
 * last days and its run log. A new rule starts disabled: try the dry run first. */
export function Automation() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const [chosen, setChosen] = useState<string>("new");
  const [editorKey, setEditorKey] = useState("new");
  const rules = useQuery({
    queryKey: ["automation", "rules"],
    queryFn: async () => ok(await api.GET("/api/v1/automation/rules", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/automation/rules/{rule_id}", { params: { path: { rule_id: id } } })),
    onSuccess: () => { setChosen("new"); setEditorKey("new"); },
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["automation", "rules"] }),
  });
  const rule = rules.data?.find((r) => r.id === chosen) ?? null;
  const choose = (id: string) => { setChosen(id); setEditorKey(id); };
  return (
    <Stack>
      <Title order={2}>{t("automation")}</Title>
      <QueryState loading={rules.isLoading} error={rules.error} retry={() => rules.refetch()} />
      <Grid>
        <Grid.Col span={{ base: 12, md: 4 }}>
          <Stack gap="xs" data-testid="rules">
            {can("automation:write") && <Button variant={chosen === "new" ? "filled" : "light"} onClick={() => choose("new")}
                                                data-testid="rule-new">+ {t("arNew")}</Button>}
            {(rules.data ?? []).map((r) => (
              <Card key={r.id} withBorder padding="xs" onClick={() => choose(r.id!)} style={{ cursor: "pointer",
                    ...(r.id === chosen ? { outline: "2px solid var(--mantine-color-blue-filled)" } : {}) }} data-testid={`rule-${r.id}`}>
                <Group justify="space-between" wrap="nowrap">
                  <Text size="sm" fw={600}>{r.name}</Text>
                  <Badge size="xs" color={r.enabled ? "green" : "gray"}>{r.enabled ? t("arOn") : t("arOff")}</Badge>
                </Group>
                <Text size="xs" c="dimmed">{t(`arTrigger_${(r.trigger as { type?: string })?.type ?? "event"}`)}
                  {(r.trigger as { event?: string })?.event ? `: ${(r.trigger as { event?: string }).event}` : ""}</Text>
              </Card>
            ))}
          </Stack>
        </Grid.Col>
        <Grid.Col span={{ base: 12, md: 8 }}>
          <Card withBorder>
            {rule ? (
              <Tabs defaultValue="rule" keepMounted={false}>
                <Tabs.List>
                  <Tabs.Tab value="rule">{t("arRule")}</Tabs.Tab>
                  <Tabs.Tab value="dry" data-testid="tab-dry-run">{t("arDryRun")}</Tabs.Tab>
                  <Tabs.Tab value="runs" data-testid="tab-runs">{t("arRuns")}</Tabs.Tab>
                  {can("automation:write") && <Button ml="auto" size="compact-xs" color="red" variant="subtle"
                                                      onClick={() => remove.mutate(rule.id!)}>{t("remove")}</Button>}
                </Tabs.List>
                <Tabs.Panel value="rule" pt="sm"><RuleEditor key={editorKey} rule={rule} onSaved={(r) => setChosen(r.id!)} /></Tabs.Panel>
                <Tabs.Panel value="dry" pt="sm"><DryRun rule={rule} /></Tabs.Panel>
                <Tabs.Panel value="runs" pt="sm"><Runs rule={rule} /></Tabs.Panel>
              </Tabs>
            ) : chosen === "new" ? (
              <RuleEditor key={editorKey} rule={null} onSaved={(r) => choose(r.id!)} />
            ) : null}
          </Card>
        </Grid.Col>
      </Grid>
    </Stack>
  );
}
