import { useEffect, useState } from "react";
import { Badge, Button, Card, Grid, Group, ScrollArea, SegmentedControl, Select, Stack, Text, Textarea, TextInput, Title,
         UnstyledButton } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useParams, useNavigate } from "react-router-dom";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { reachMessage, readable } from "../lib/reach";
import { useLocale, usePermissions } from "../lib/me";
import { templatesFor } from "../lib/templates";

type Conversation = Schemas["ConversationOut"];
const REPLY_CHANNELS = ["email", "sms", "telegram", "whatsapp"] as const;

/** A reply goes out on the channel the client last wrote on. */
export function replyChannel(messages?: Schemas["MessageOut"][]) {
  const last = [...(messages ?? [])].reverse().find((m) => m.direction === "inbound");
  const channel = REPLY_CHANNELS.find((c) => c === last?.channel);
  return channel ? { channel } : {};
}

/** Conversations with clients (e-mail, SMS, Telegram, WhatsApp): the list, a thread, reply. */
export function Inbox() {
  const { t } = useTranslation();
  const locale = useLocale();
  const navigate = useNavigate();
  const { conversationId } = useParams();
  const [status, setStatus] = useState<"open" | "closed">("open");
  const [mine, setMine] = useState("all");
  const list = useQuery({
    queryKey: ["conversations", status, mine],
    refetchInterval: 15_000,
    queryFn: async () => ok(await api.GET("/api/v1/conversations", { params: { query: {
      status, limit: 100, ...(mine === "me" ? { assignee_id: "me" } : mine === "waiting" ? { waiting: true } : {}) } } })).items ?? [],
  });
  const items = list.data ?? [];
  return (
    <Stack>
      <Title order={2}>{t("inbox")}</Title>
      <Group>
        <SegmentedControl value={status} onChange={(v) => setStatus(v as "open")} size="xs"
                          data={[{ value: "open", label: t("convOpen") }, { value: "closed", label: t("convClosed") }]} />
        <SegmentedControl value={mine} onChange={setMine} size="xs"
                          data={[{ value: "all", label: t("all") }, { value: "me", label: t("me") }, { value: "waiting", label: t("waiting") }]} />
      </Group>
      <Grid>
        <Grid.Col span={{ base: 12, md: conversationId ? 4 : 12 }} display={{ base: conversationId ? "none" : "block", md: "block" }}>
          <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
          <Stack gap={4} data-testid="conversation-list">
            {!list.isLoading && !items.length && <Text c="dimmed">{t("nothingHere")}</Text>}
            {items.map((c) => (
              <UnstyledButton key={c.id} onClick={() => navigate(`/inbox/${c.id}`)} data-testid={`conversation-${c.id}`}>
                <Card withBorder padding="xs" bg={c.id === conversationId ? "var(--mantine-color-blue-light)" : undefined}>
                  <Group justify="space-between" wrap="nowrap">
                    <Text fw={600} truncate>{c.contact_name || c.subject || "—"}</Text>
                    <Text size="xs" c="dimmed">{locale.dateTime(c.last_message_at)}</Text>
                  </Group>
                  <Text size="sm" c="dimmed" lineClamp={1}>{c.last_preview}</Text>
                  <Group gap={4} mt={2}>
                    {(c.channels ?? []).map((ch) => <Badge key={ch} size="xs" variant="light">{ch}</Badge>)}
                    {c.waiting_since && <Badge size="xs" color="orange">{t("waiting")}</Badge>}
                  </Group>
                </Card>
              </UnstyledButton>
            ))}
          </Stack>
        </Grid.Col>
        {conversationId && (
          <Grid.Col span={{ base: 12, md: 8 }}>
            <Thread id={conversationId} summary={items.find((c) => c.id === conversationId)} />
          </Grid.Col>
        )}
      </Grid>
    </Stack>
  );
}

function Thread({ id, summary }: { id: string; summary?: Conversation }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can, me } = usePermissions();
  const queryClient = useQueryClient();
  const [text, setText] = useState("");
  const [subject, setSubject] = useState("");
  const [templateId, setTemplateId] = useState<string | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const clear = () => { setText(""); setSubject(""); setTemplateId(null); setErrors({}); };
  useEffect(clear, [id]);
  const conversation = useQuery({
    queryKey: ["conversation", id],
    initialData: summary,
    queryFn: async () => ok(await api.GET("/api/v1/conversations/{conversation_id}", { params: { path: { conversation_id: id } } })),
  });
  const messages = useQuery({
    queryKey: ["conversation", id, "messages"],
    refetchInterval: 10_000,
    queryFn: async () => ok(await api.GET("/api/v1/conversations/{conversation_id}/messages", {
      params: { path: { conversation_id: id }, query: { limit: 200 } } })).items ?? [],
  });
  const refresh = () => {
    queryClient.invalidateQueries({ queryKey: ["conversation", id] });
    queryClient.invalidateQueries({ queryKey: ["conversations"] });
  };
  const channel = replyChannel(messages.data);
  const templates = useQuery({
    queryKey: ["templates", "list", "composer"],
    enabled: can("templates:read") && can("conversations:write"),
    queryFn: async () => ok(await api.GET("/api/v1/templates", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const usable = templatesFor(templates.data ?? [], channel.channel ?? "email");
  // a template chosen: its text filled for this thread's client (and their open deal), to edit before sending
  const fill = useMutation({
    mutationFn: async (templateId: string) => ok(await api.POST("/api/v1/templates/{template_id}/render", {
      params: { path: { template_id: templateId } }, body: { contact_id: conversation.data?.contact_id ?? null } })),
    onSuccess: (filled) => { setText(filled.body ?? ""); setSubject(filled.subject ?? ""); setErrors({}); },
    onError: (error) => setErrors(Object.fromEntries(Object.entries(fieldErrors(error)).map(([k, v]) => [k, readable(v, t)]))),
  });
  const reply = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/conversations/{conversation_id}/messages", {
      params: { path: { conversation_id: id } }, body: { body: text.trim(), language: locale.language, ...channel,
        ...(subject.trim() ? { subject: subject.trim() } : {}), ...(templateId ? { template_id: templateId } : {}) } })),
    onSuccess: () => { clear(); refresh(); },
    onError: (error) => setErrors(Object.fromEntries(Object.entries(fieldErrors(error)).map(([k, v]) => [k, readable(v, t)]))),
  });
  const act = useMutation({
    mutationFn: async (action: "close" | "reopen" | "assign") => ok(action === "assign"
      ? await api.POST("/api/v1/conversations/{conversation_id}/assign", { params: { path: { conversation_id: id } }, body: { assignee_id: me?.id ?? null } })
      : action === "close" ? await api.POST("/api/v1/conversations/{conversation_id}/close", { params: { path: { conversation_id: id } } })
      : await api.POST("/api/v1/conversations/{conversation_id}/reopen", { params: { path: { conversation_id: id } } })),
    onSuccess: refresh,
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: readable((error as Error).message, t) }),
  });
  const c = conversation.data;
  const writable = can("conversations:write");
  return (
    <Card withBorder data-testid="thread">
      <Group justify="space-between" mb="xs">
        <Stack gap={0}>
          <Title order={4}>{c?.contact_name || c?.subject || "—"}</Title>
          {c?.contact_id && <Text size="sm" component={Link} to={`/contacts/${c.contact_id}`} c="blue">{t("openContact")}</Text>}
        </Stack>
        {writable && c && (
          <Group gap="xs">
            {c.assignee_id !== me?.id && <Button size="xs" variant="light" onClick={() => act.mutate("assign")}>{t("assignToMe")}</Button>}
            {c.status === "open"
              ? <Button size="xs" variant="default" onClick={() => act.mutate("close")} data-testid="conversation-close">{t("closeConversation")}</Button>
              : <Button size="xs" variant="default" onClick={() => act.mutate("reopen")}>{t("reopen")}</Button>}
          </Group>
        )}
      </Group>
      <QueryState loading={messages.isLoading} error={messages.error} retry={() => messages.refetch()} />
      <ScrollArea.Autosize mah={480}>
        <Stack gap="xs" data-testid="messages">
          {(messages.data ?? []).map((m) => (
            <Card key={m.id} padding="xs" withBorder maw="85%" ml={m.direction === "outbound" ? "auto" : 0}
                  bg={m.direction === "outbound" ? "var(--mantine-color-blue-light)" : undefined} data-testid={`message-${m.direction}`}>
              {m.subject && <Text size="sm" fw={600}>{m.subject}</Text>}
              <Text size="sm" style={{ whiteSpace: "pre-wrap" }}>{m.text}</Text>
              <Text size="xs" c="dimmed">{m.channel} · {locale.dateTime(m.at)}{m.direction === "outbound" ? ` · ${t(`msg_${m.status}`, { defaultValue: m.status })}` : ""}</Text>
              {m.error && <Text size="xs" c="red" title={m.error} data-testid="message-error">{reachMessage(m.error, t)}</Text>}
            </Card>
          ))}
        </Stack>
      </ScrollArea.Autosize>
      {writable && (
        <form onSubmit={(e) => { e.preventDefault(); if (text.trim()) reply.mutate(); }}>
          <Stack gap="xs" mt="sm">
            {usable.length > 0 && (
              <Select size="xs" maw={320} label={t("tplPick")} placeholder={t("tplPickHint")} searchable clearable value={templateId}
                      data={usable.map((tpl) => ({ value: tpl.id!, label: tpl.name! }))} error={errors.template_id}
                      onChange={(value) => { setTemplateId(value); if (value) fill.mutate(value); }} data-testid="reply-template" />
            )}
            {(subject || templateId) && (channel.channel ?? "email") === "email" && (
              <TextInput size="xs" label={t("cmpSubject")} value={subject} error={errors.subject}
                         onChange={(e) => setSubject(e.currentTarget.value)} data-testid="reply-subject" />
            )}
            <Textarea placeholder={t("writeReply")} value={text} autosize minRows={2} error={errors.body || errors.channel || errors._}
                      onChange={(e) => setText(e.currentTarget.value)} data-testid="reply-text" />
            <Group justify="flex-end">
              <Button type="submit" loading={reply.isPending} disabled={!text.trim()} data-testid="reply-send">{t("send")}</Button>
            </Group>
          </Stack>
        </form>
      )}
    </Card>
  );
}
