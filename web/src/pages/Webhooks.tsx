import { useState } from "react";
import { Alert, Anchor, Badge, Button, Card, Code, CopyButton, Grid, Group, MultiSelect, PasswordInput, SegmentedControl, Stack,
         Switch, Table, Text, TextInput, Title, Tooltip } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { useLocale } from "../lib/me";
import { reachMessage } from "../lib/reach";

type Webhook = Schemas["WebhookOut"];
type WebhookEvent = Schemas["WebhookIn"]["events"][number];
// every event a webhook may subscribe to: a new one in the API breaks this type check
const EVENT_SET: Record<WebhookEvent, true> = {
  contact_created: true, contact_updated: true, contact_deleted: true, contact_restored: true, contact_merged: true,
  company_created: true, company_updated: true, company_deleted: true, import_finished: true, lead_captured: true,
  deal_created: true, lead_routed: true, deal_stage_changed: true, deal_won: true, deal_lost: true, deal_assigned: true,
  task_created: true, task_assigned: true, task_due_soon: true, task_overdue: true, task_escalated: true, task_completed: true,
  call_started: true, call_answered: true, call_ended: true, call_missed: true,
  note_created: true, note_mentioned: true, commitment_made: true,
  conversation_assigned: true, conversation_closed: true, conversation_escalated: true, conversation_reopened: true,
  message_failed: true, message_received: true, message_sent: true,
};
const EVENTS = Object.keys(EVENT_SET) as WebhookEvent[];
const GROUPS = ["contact", "company", "import", "lead", "deal", "task", "call", "note", "commitment", "conversation", "message"];
const STATUS_COLOR: Record<string, string> = { delivered: "green", failed: "red", pending: "yellow", sending: "blue" };

function NewWebhook({ onCreated }: { onCreated: (id: string) => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>([]);
  const [description, setDescription] = useState("");
  const [secret, setSecret] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [created, setCreated] = useState<Schemas["WebhookCreated"] | null>(null);
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/webhooks", { body: {
      url: url.trim(), events: events as WebhookEvent[], ...(description.trim() ? { description: description.trim() } : {}),
      ...(secret ? { secret } : {}) } })),
    onSuccess: (hook) => {
      setCreated(hook); setUrl(""); setEvents([]); setDescription(""); setSecret(""); setErrors({});
      queryClient.invalidateQueries({ queryKey: ["webhooks"] });
      onCreated(hook.id!);
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const groups = GROUPS.map((g) => ({ group: g, items: EVENTS.filter((e) => e.startsWith(`${g}_`)) })).filter((g) => g.items.length);
  return (
    <Card withBorder>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="webhook-new">
        <Stack gap="xs">
          <Title order={5}>{t("whNew")}</Title>
          <TextInput label={t("whUrl")} placeholder="https://example.com/crm-events" required value={url} error={errors.url}
                     onChange={(e) => setUrl(e.currentTarget.value)} data-testid="webhook-url" />
          <MultiSelect label={t("whEvents")} data={groups} value={events} onChange={setEvents} searchable required
                       error={errors.events} data-testid="webhook-events" />
          <Group grow align="flex-start">
            <TextInput label={t("description")} value={description} onChange={(e) => setDescription(e.currentTarget.value)} />
            <PasswordInput label={t("whSecret")} description={t("whSecretHint")} value={secret} error={errors.secret}
                           onChange={(e) => setSecret(e.currentTarget.value)} />
          </Group>
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button type="submit" loading={create.isPending} disabled={!url.trim() || !events.length} data-testid="webhook-create">{t("whCreate")}</Button>
          </Group>
        </Stack>
      </form>
      {created?.secret && (
        <Alert color="yellow" mt="sm" title={t("whSecretOnce")} withCloseButton onClose={() => setCreated(null)} data-testid="webhook-secret">
          <Group><Code>{created.secret}</Code>
            <CopyButton value={created.secret}>{({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? t("copied") : t("copy")}</Button>}</CopyButton>
          </Group>
          <Text size="xs" mt={4}>{t("whSignatureHint")}</Text>
        </Alert>
      )}
    </Card>
  );
}

/** A webhook's delivery log, newest first, refreshed while open; a delivery can be sent again. */
function Deliveries({ hook }: { hook: Webhook }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const [status, setStatus] = useState("all");
  const deliveries = useQuery({
    queryKey: ["webhooks", "deliveries", hook.id, status],
    refetchInterval: 5000,
    queryFn: async () => ok(await api.GET("/api/v1/webhooks/{webhook_id}/deliveries", { params: {
      path: { webhook_id: hook.id! }, query: { limit: 50, ...(status !== "all" ? { status: status as "failed" } : {}) } } })).items ?? [],
  });
  const redeliver = useMutation({
    mutationFn: async (id: string) => ok(await api.POST("/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", {
      params: { path: { webhook_id: hook.id!, delivery_id: id } } })),
    onSuccess: () => toasts.show({ color: "green", message: t("whRedelivering") }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["webhooks", "deliveries", hook.id] }),
  });
  return (
    <Card withBorder data-testid="webhook-deliveries">
      <Stack gap="xs">
        <Group justify="space-between">
          <Title order={5}>{t("whDeliveries")}</Title>
          <SegmentedControl size="xs" value={status} onChange={setStatus}
                            data={["all", "delivered", "failed", "pending"].map((s) => ({ value: s, label: t(`whStatus_${s}`) }))} />
        </Group>
        <Text size="xs" c="dimmed" style={{ wordBreak: "break-all" }}>{hook.url}</Text>
        <QueryState loading={deliveries.isLoading} error={deliveries.error} retry={() => deliveries.refetch()} />
        {deliveries.data && !deliveries.data.length && <Text c="dimmed" size="sm">{t("whNoDeliveries")}</Text>}
        {!!deliveries.data?.length && (
          <Table.ScrollContainer minWidth={320}>
            <Table data-testid="deliveries-table">
              <Table.Thead><Table.Tr><Table.Th>{t("whEvent")}</Table.Th><Table.Th>{t("status")}</Table.Th>
                <Table.Th visibleFrom="sm">{t("whAttempts")}</Table.Th><Table.Th visibleFrom="sm">{t("created")}</Table.Th><Table.Th /></Table.Tr></Table.Thead>
              <Table.Tbody>
                {deliveries.data.map((d) => (
                  <Table.Tr key={d.id} data-testid={`delivery-${d.id}`}>
                    <Table.Td><Code>{d.event_type}</Code></Table.Td>
                    <Table.Td>
                      <Badge color={STATUS_COLOR[d.status ?? ""] ?? "gray"} variant="light">{t(`whStatus_${d.status}`, { defaultValue: d.status })}</Badge>
                      {d.last_error && (
                        <Tooltip label={d.last_error} multiline w={320}>
                          <Text size="xs" c="red" data-testid="delivery-error">{reachMessage(d.last_error, t)}</Text>
                        </Tooltip>
                      )}
                      {d.response && <Text size="xs" c="dimmed" lineClamp={1}>{d.response}</Text>}
                    </Table.Td>
                    <Table.Td visibleFrom="sm">{d.attempts ?? 0}{d.redeliveries ? ` (+${d.redeliveries})` : ""}</Table.Td>
                    <Table.Td visibleFrom="sm">{locale.dateTime(d.created_at)}</Table.Td>
                    <Table.Td>
                      {(d.status === "failed" || d.status === "delivered") && (
                        <Button size="compact-xs" variant="light" loading={redeliver.isPending && redeliver.variables === d.id}
                                onClick={() => redeliver.mutate(d.id!)} data-testid="delivery-redeliver">{t("whRedeliver")}</Button>
                      )}
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        )}
      </Stack>
    </Card>
  );
}

/** Settings → Webhooks: subscriptions (the signing secret shown once), on/off, and each one's
 * delivery log with redeliver. */
export function Webhooks() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [chosen, setChosen] = useState<string | null>(null);
  const hooks = useQuery({
    queryKey: ["webhooks"],
    queryFn: async () => ok(await api.GET("/api/v1/webhooks", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const toggle = useMutation({
    mutationFn: async ({ id, active }: { id: string; active: boolean }) =>
      ok(await api.PATCH("/api/v1/webhooks/{webhook_id}", { params: { path: { webhook_id: id } }, body: { active } })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["webhooks"] }),
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/webhooks/{webhook_id}", { params: { path: { webhook_id: id } } })),
    onSuccess: (_data, id) => { if (chosen === id) setChosen(null); },
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["webhooks"] }),
  });
  const hook = hooks.data?.find((h) => h.id === chosen);
  return (
    <Stack>
      <Title order={2}>{t("webhooks")}</Title>
      <Grid>
        <Grid.Col span={{ base: 12, md: 6 }}>
          <Stack>
            <NewWebhook onCreated={setChosen} />
            <QueryState loading={hooks.isLoading} error={hooks.error} retry={() => hooks.refetch()} />
            {hooks.data && !hooks.data.length && <Text c="dimmed">{t("whNone")}</Text>}
            {(hooks.data ?? []).map((h) => (
              <Card key={h.id} withBorder padding="sm" data-testid={`webhook-${h.id}`}
                    style={h.id === chosen ? { outline: "2px solid var(--mantine-color-blue-filled)" } : undefined}>
                <Group justify="space-between" wrap="nowrap" align="flex-start">
                  <Stack gap={2} style={{ minWidth: 0 }}>
                    <Anchor component="button" type="button" onClick={() => setChosen(h.id!)} style={{ wordBreak: "break-all", textAlign: "start" }}
                            data-testid="webhook-open">{h.url}</Anchor>
                    {h.description && <Text size="xs" c="dimmed">{h.description}</Text>}
                    <Group gap={2}>{(h.events ?? []).map((e) => <Badge key={e} size="xs" variant="outline">{e}</Badge>)}</Group>
                  </Stack>
                  <Stack gap={4} align="flex-end">
                    <Switch size="xs" checked={!!h.active} label={t("active")} onChange={(e) => toggle.mutate({ id: h.id!, active: e.currentTarget.checked })} />
                    <Button size="compact-xs" color="red" variant="subtle" onClick={() => remove.mutate(h.id!)} data-testid="webhook-delete">{t("remove")}</Button>
                  </Stack>
                </Group>
              </Card>
            ))}
          </Stack>
        </Grid.Col>
        <Grid.Col span={{ base: 12, md: 6 }}>
          {hook ? <Deliveries key={hook.id} hook={hook} /> : <Text c="dimmed">{t("whChoose")}</Text>}
        </Grid.Col>
      </Grid>
    </Stack>
  );
}
