import { useEffect, useState } from "react";
import { Button, Card, Checkbox, Group, MultiSelect, Select, Stack, Switch, Table, Text, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { leadLabel, REMINDER_CHOICES, useNotificationPrefs } from "../lib/reminders";

const CHANNELS = ["inapp", "email", "sms", "telegram"] as const;
const DIGEST_REPORTS = ["sales", "forecast", "tasks", "calls", "funnel"] as const;
type Prefs = Schemas["PreferencesOut"];
type Digest = Schemas["Digest"];

/** Monday..Sunday (the API's 0..6) in the user's language. */
function weekdays(language: string) {
  const monday = new Date(Date.UTC(2024, 0, 1)); // a Monday
  return Array.from({ length: 7 }, (_, i) => ({ value: String(i), label: new Intl.DateTimeFormat(language, {
    weekday: "long", timeZone: "UTC" }).format(new Date(monday.getTime() + i * 86400000)) }));
}

/** The caller's reminders and notifications: the lead times a new task's reminders start
 * with, the channels per kind of notice, quiet hours (GET/PUT /notification-preferences). */
export function NotificationSettings() {
  const { t, i18n } = useTranslation();
  const queryClient = useQueryClient();
  const prefs = useNotificationPrefs();
  const [draft, setDraft] = useState<Prefs | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  useEffect(() => { if (prefs.data) setDraft(prefs.data); }, [prefs.data]);
  const save = useMutation({
    mutationFn: async (body: Prefs) => ok(await api.PUT("/api/v1/notification-preferences", { body: {
      channels: body.channels as Record<string, (typeof CHANNELS)[number][]>, quiet_hours: body.quiet_hours ?? null,
      task_reminders: body.task_reminders ?? [], ...(body.digest ? { digest: body.digest } : {}) } })),
    onSuccess: (data) => {
      queryClient.setQueryData(["notification-preferences"], data);
      setErrors({});
      toasts.show({ color: "green", message: t("saved") });
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const sendDigest = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/notification-preferences/digest/send", {})),
    onSuccess: () => toasts.show({ color: "green", message: t("digestSent") }),
    onError: (error) => setErrors(fieldErrors(error)),
  });
  if (!draft) return <QueryState loading={prefs.isLoading} error={prefs.error} retry={() => prefs.refetch()} />;
  const channels = draft.channels ?? {};
  const toggle = (kind: string, channel: string, on: boolean) => setDraft({ ...draft, channels: { ...channels,
    [kind]: on ? [...(channels[kind] ?? []), channel] : (channels[kind] ?? []).filter((c) => c !== channel) } });
  const quiet = draft.quiet_hours;
  const digest: Digest = draft.digest ?? { frequency: "off", hour: 8, weekday: 0, reports: [...DIGEST_REPORTS] };
  const setDigest = (changes: Partial<Digest>) => setDraft({ ...draft, digest: { ...digest, ...changes } });
  return (
    <Stack maw={760}>
      <Title order={2}>{t("notificationSettings")}</Title>
      <Card withBorder data-testid="reminder-settings">
        <Title order={4}>{t("reminders")}</Title>
        <MultiSelect label={t("reminderLeadTimes")} description={t("reminderLeadHint")} data-testid="reminder-leads"
                     data={REMINDER_CHOICES.map((m) => ({ value: String(m), label: leadLabel(m, i18n.language) }))}
                     value={(draft.task_reminders ?? []).map(String)} error={errors.task_reminders}
                     onChange={(values) => setDraft({ ...draft, task_reminders: values.map(Number).sort((a, b) => a - b) })} />
      </Card>
      <Card withBorder>
        <Title order={4} mb="xs">{t("channels")}</Title>
        <Table.ScrollContainer minWidth={420}>
          <Table data-testid="channel-table">
            <Table.Thead>
              <Table.Tr><Table.Th />{CHANNELS.map((c) => <Table.Th key={c}>{t(`channel_${c}`)}</Table.Th>)}</Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {Object.keys(channels).sort().map((kind) => (
                <Table.Tr key={kind}>
                  <Table.Td>{t(`event_${kind}`, { defaultValue: kind.replace(/_/g, " ") })}</Table.Td>
                  {CHANNELS.map((c) => (
                    <Table.Td key={c}>
                      <Checkbox aria-label={`${kind} ${c}`} checked={(channels[kind] ?? []).includes(c)}
                                data-testid={`channel-${kind}-${c}`} onChange={(e) => toggle(kind, c, e.currentTarget.checked)} />
                    </Table.Td>
                  ))}
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
        {errors.channels && <Text c="red" size="sm">{errors.channels}</Text>}
      </Card>
      <Card withBorder>
        <Switch label={t("quietHours")} checked={!!quiet} data-testid="quiet-hours"
                onChange={(e) => setDraft({ ...draft, quiet_hours: e.currentTarget.checked ? { start: "22:00", end: "07:00" } : null })} />
        {quiet && (
          <Group mt="xs">
            <TextInput type="time" label={t("from")} value={quiet.start} error={errors.quiet_hours}
                       onChange={(e) => setDraft({ ...draft, quiet_hours: { ...quiet, start: e.currentTarget.value } })} />
            <TextInput type="time" label={t("to")} value={quiet.end}
                       onChange={(e) => setDraft({ ...draft, quiet_hours: { ...quiet, end: e.currentTarget.value } })} />
          </Group>
        )}
        <Text size="xs" c="dimmed" mt="xs">{t("quietHoursHint")}</Text>
      </Card>
      <Card withBorder data-testid="digest-settings">
        <Title order={4}>{t("digest")}</Title>
        <Text size="xs" c="dimmed" mb="xs">{t("digestHint")}</Text>
        <Group align="flex-end">
          <Select label={t("digestFrequency")} data-testid="digest-frequency" allowDeselect={false} w={160}
                  data={["off", "daily", "weekly"].map((f) => ({ value: f, label: t(`digest_${f}`) }))}
                  value={digest.frequency ?? "off"} onChange={(v) => setDigest({ frequency: (v ?? "off") as Digest["frequency"] })} />
          {digest.frequency !== "off" && (
            <Select label={t("digestHour")} data-testid="digest-hour" allowDeselect={false} w={100}
                    data={Array.from({ length: 24 }, (_, h) => ({ value: String(h), label: `${String(h).padStart(2, "0")}:00` }))}
                    value={String(digest.hour ?? 8)} onChange={(v) => setDigest({ hour: Number(v ?? 8) })} />
          )}
          {digest.frequency === "weekly" && (
            <Select label={t("digestWeekday")} data-testid="digest-weekday" allowDeselect={false} w={160}
                    data={weekdays(i18n.language)} value={String(digest.weekday ?? 0)}
                    onChange={(v) => setDigest({ weekday: Number(v ?? 0) })} />
          )}
        </Group>
        {digest.frequency !== "off" && (
          <MultiSelect mt="xs" label={t("digestReports")} data-testid="digest-reports" error={errors.digest}
                       data={DIGEST_REPORTS.map((r) => ({ value: r, label: t(`digestReport_${r}`) }))}
                       value={digest.reports ?? []} onChange={(values) => setDigest({ reports: values as Digest["reports"] })} />
        )}
        <Group mt="xs">
          <Button variant="light" size="xs" onClick={() => sendDigest.mutate()} loading={sendDigest.isPending}
                  data-testid="digest-send">{t("digestSendNow")}</Button>
        </Group>
      </Card>
      {errors._ && <Text c="red" size="sm">{errors._}</Text>}
      <Group><Button onClick={() => save.mutate(draft)} loading={save.isPending} data-testid="prefs-save">{t("save")}</Button></Group>
    </Stack>
  );
}
