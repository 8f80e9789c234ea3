import { useEffect, useState } from "react";
import { Alert, Anchor, Badge, Button, Card, Grid, Group, Select, SimpleGrid, Stack, Text, TextInput, Textarea, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { useLocale, usePermissions } from "../lib/me";

type Campaign = Schemas["CampaignOut"];
type Channel = Schemas["CampaignIn"]["channel"];
const STATUS_COLOR: Record<string, string> = { draft: "gray", scheduled: "yellow", queuing: "blue", sending: "blue", sent: "green", failed: "red" };
const COUNTS = ["queued", "delivered", "failed", "skipped", "unsubscribed"] as const;
// a marketing e-mail must carry the unsubscribe link: the draft starts with it
const EMAIL_BODY = "\n\n—\n{{ unsubscribe_url }}";

function SegmentSize({ segmentId }: { segmentId: string }) {
  const { t } = useTranslation();
  const count = useQuery({
    queryKey: ["segments", segmentId, "count"],
    queryFn: async () => ok(await api.GET("/api/v1/segments/{segment_id}/count", { params: { path: { segment_id: segmentId } } })),
  });
  if (count.error) return <Text size="xs" c="red">{(count.error as Error).message}</Text>;
  return <Text size="xs" c="dimmed" data-testid="cmp-segment-size">{count.data ? t("cmpSegmentSize", { count: count.data.count ?? 0 }) : "…"}</Text>;
}

function NewCampaign({ onCreated }: { onCreated: (id: string) => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const segments = useQuery({
    queryKey: ["segments"],
    queryFn: async () => ok(await api.GET("/api/v1/segments", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const empty = { name: "", segment_id: "", channel: "email" as Channel, subject: "", body: EMAIL_BODY };
  const [draft, setDraft] = useState(empty);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/campaigns", { body: {
      name: draft.name.trim(), segment_id: draft.segment_id, channel: draft.channel, body: draft.body,
      ...(draft.channel === "email" ? { subject: draft.subject } : {}) } })),
    onSuccess: (campaign) => {
      setDraft(empty); setErrors({});
      queryClient.invalidateQueries({ queryKey: ["campaigns"] });
      onCreated(campaign.id!);
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  return (
    <Card withBorder>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="campaign-new">
        <Stack gap="xs">
          <Title order={5}>{t("cmpNew")}</Title>
          <TextInput label={t("name")} required value={draft.name} error={errors.name}
                     onChange={(e) => setDraft({ ...draft, name: e.currentTarget.value })} data-testid="cmp-name" />
          <Group grow align="flex-start" wrap="wrap">
            <Select label={t("cmpSegment")} required searchable value={draft.segment_id || null} error={errors.segment_id} miw={160}
                    data={(segments.data ?? []).map((s) => ({ value: s.id!, label: s.name ?? s.id! }))} data-testid="cmp-segment"
                    nothingFoundMessage={t("cmpNoSegments")} onChange={(v) => setDraft({ ...draft, segment_id: v ?? "" })} />
            <Select label={t("cmpChannel")} value={draft.channel} allowDeselect={false} error={errors.channel} miw={120}
                    data={(["email", "sms"] as Channel[]).map((c) => ({ value: c, label: t(`channel_${c}`) }))}
                    onChange={(v) => v && setDraft({ ...draft, channel: v as Channel,
                      body: v === "sms" && draft.body === EMAIL_BODY ? "" : draft.body })} />
          </Group>
          {draft.segment_id && <SegmentSize segmentId={draft.segment_id} />}
          {draft.channel === "email" && (
            <TextInput label={t("cmpSubject")} required value={draft.subject} error={errors.subject}
                       onChange={(e) => setDraft({ ...draft, subject: e.currentTarget.value })} data-testid="cmp-subject" />
          )}
          <Textarea label={t("cmpBody")} description={t("cmpBodyHint", { example: "{{ contact.first_name }}", unsubscribe: "{{ unsubscribe_url }}" })} required autosize minRows={4} value={draft.body} error={errors.body}
                    onChange={(e) => setDraft({ ...draft, body: e.currentTarget.value })} data-testid="cmp-body" />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button type="submit" loading={create.isPending} disabled={!draft.segment_id} data-testid="cmp-create">{t("cmpSaveDraft")}</Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}

function CampaignDetail({ id }: { id: string }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const campaign = useQuery({
    queryKey: ["campaigns", id],
    // the counts move while it sends
    refetchInterval: (query) => (["scheduled", "queuing", "sending"].includes(query.state.data?.status ?? "") ? 3000 : false),
    queryFn: async () => ok(await api.GET("/api/v1/campaigns/{campaign_id}", { params: { path: { campaign_id: id } } })),
  });
  const send = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/campaigns/{campaign_id}/send", { params: { path: { campaign_id: id } }, body: {} })),
    onSuccess: () => toasts.show({ color: "green", message: t("cmpSending") }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["campaigns"] }),
  });
  const c = campaign.data;
  const status = c?.status;
  // the list shows the status too
  useEffect(() => { if (status) queryClient.invalidateQueries({ queryKey: ["campaigns"], exact: true }); }, [status, queryClient]);
  return (
    <Card withBorder data-testid="campaign-detail">
      <QueryState loading={campaign.isLoading} error={campaign.error} retry={() => campaign.refetch()} />
      {c && (
        <Stack gap="xs">
          <Group justify="space-between" wrap="nowrap">
            <Title order={5} style={{ wordBreak: "break-word" }}>{c.name}</Title>
            <Badge color={STATUS_COLOR[c.status ?? ""] ?? "gray"} data-testid="cmp-status">{t(`cmpStatus_${c.status}`, { defaultValue: c.status })}</Badge>
          </Group>
          <Text size="xs" c="dimmed">{t(`channel_${c.channel}`, { defaultValue: c.channel })}
            {c.send_at ? ` · ${locale.dateTime(c.send_at)}` : ""}</Text>
          {c.segment_id && <SegmentSize segmentId={c.segment_id} />}
          {c.subject && <Text fw={500} size="sm">{c.subject}</Text>}
          <Text size="sm" style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>{c.body}</Text>
          <SimpleGrid cols={{ base: 3, sm: 5 }} data-testid="cmp-counts">
            {COUNTS.map((k) => (
              <Stack key={k} gap={0} align="center">
                <Text fw={700} data-testid={`cmp-count-${k}`}>{c.counts?.[k] ?? 0}</Text><Text size="xs" c="dimmed">{t(`cmpCount_${k}`)}</Text>
              </Stack>
            ))}
          </SimpleGrid>
          {c.status === "draft" && can("automation:write") && (
            <Group justify="flex-end">
              <Button loading={send.isPending} onClick={() => send.mutate()} data-testid="cmp-send">{t("cmpSendNow")}</Button>
            </Group>
          )}
        </Stack>
      )}
    </Card>
  );
}

/** Settings → Campaigns: drafts (a template for a saved segment, by e-mail or SMS), sending
 * them, and each one's counts. */
export function Campaigns() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const locale = useLocale();
  const [chosen, setChosen] = useState<string | null>(null);
  const campaigns = useQuery({
    queryKey: ["campaigns"],
    queryFn: async () => ok(await api.GET("/api/v1/campaigns", { params: { query: { limit: 200 } } })).items ?? [],
  });
  return (
    <Stack>
      <Title order={2}>{t("campaigns")}</Title>
      <Grid>
        <Grid.Col span={{ base: 12, md: 6 }}>
          <Stack>
            {can("automation:write") && <NewCampaign onCreated={setChosen} />}
            <QueryState loading={campaigns.isLoading} error={campaigns.error} retry={() => campaigns.refetch()} />
            {campaigns.data && !campaigns.data.length && <Text c="dimmed">{t("cmpNone")}</Text>}
            {(campaigns.data ?? []).map((c: Campaign) => (
              <Card key={c.id} withBorder padding="sm" data-testid={`campaign-${c.id}`}
                    style={c.id === chosen ? { outline: "2px solid var(--mantine-color-blue-filled)" } : undefined}>
                <Group justify="space-between" wrap="nowrap">
                  <Stack gap={0} style={{ minWidth: 0 }}>
                    <Anchor component="button" type="button" onClick={() => setChosen(c.id!)} style={{ textAlign: "start", wordBreak: "break-word" }}
                            data-testid="campaign-open">{c.name}</Anchor>
                    <Text size="xs" c="dimmed">{t(`channel_${c.channel}`, { defaultValue: c.channel })} · {locale.dateTime(c.created_at)}</Text>
                  </Stack>
                  <Badge color={STATUS_COLOR[c.status ?? ""] ?? "gray"} variant="light">{t(`cmpStatus_${c.status}`, { defaultValue: c.status })}</Badge>
                </Group>
              </Card>
            ))}
          </Stack>
        </Grid.Col>
        <Grid.Col span={{ base: 12, md: 6 }}>
          {chosen ? <CampaignDetail key={chosen} id={chosen} /> : <Text c="dimmed">{t("cmpChoose")}</Text>}
        </Grid.Col>
      </Grid>
    </Stack>
  );
}
