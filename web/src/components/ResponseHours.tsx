import { Checkbox, Group, NumberInput, Select, Stack, Switch, Text, TextInput } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { weekErrors, type WeekDraft } from "../lib/settings";

function dayName(day: number, language: string) {
  const monday = Date.UTC(2024, 0, 1);  // a Monday; ISO day 1
  return new Intl.DateTimeFormat(language, { weekday: "long", timeZone: "UTC" }).format(new Date(monday + (day - 1) * 86400000));
}

function zones(current: string): string[] {
  const all = (Intl as unknown as { supportedValuesOf?: (key: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  return [...new Set(["UTC", ...all, current])];
}

/** A mailbox's or channel's first-response target: the minutes a client may wait, and the
 * week its clock runs in (each day open or closed, with its own from / to, in a time zone).
 * The API's errors (first_response_minutes, working_hours.*) show at their field / day. */
export function ResponseHours({ minutes, onMinutes, week, onWeek, errors }: {
  minutes: number | ""; onMinutes: (minutes: number | "") => void; week: WeekDraft; onWeek: (week: WeekDraft) => void;
  errors: Record<string, string>;
}) {
  const { t, i18n } = useTranslation();
  const byDay = weekErrors(week, errors);
  const setDay = (day: number, change: Partial<WeekDraft["days"][number]>) =>
    onWeek({ ...week, days: week.days.map((d) => (d.day === day ? { ...d, ...change } : d)) });
  return (
    <Stack gap={6} data-testid="response-hours">
      <NumberInput label={t("frMinutes")} description={t("frMinutesHint")} value={minutes} min={0} max={10080} w={{ base: "100%", xs: 260 }}
                   allowDecimal={false} error={errors.first_response_minutes}
                   onChange={(v) => onMinutes(typeof v === "number" ? v : "")} data-testid="fr-minutes" />
      <Switch label={t("frWorkingHours")} description={t("frWorkingHoursHint")} checked={week.enabled}
              onChange={(e) => onWeek({ ...week, enabled: e.currentTarget.checked })} data-testid="fr-hours-on" />
      {week.enabled && (
        <Stack gap={4}>
          <Select label={t("frTimezone")} searchable allowDeselect={false} value={week.timezone} data={zones(week.timezone)}
                  error={byDay.timezone} w={{ base: "100%", xs: 260 }} onChange={(v) => v && onWeek({ ...week, timezone: v })}
                  data-testid="fr-timezone" />
          {week.days.map((d) => (
            <Group key={d.day} gap={6} wrap="wrap" align="flex-start" data-testid={`fr-day-${d.day}`}>
              <Checkbox label={dayName(d.day, i18n.language)} checked={d.open} w={110} mt={8} style={{ flexShrink: 0 }}
                        onChange={(e) => setDay(d.day, { open: e.currentTarget.checked })} data-testid="fr-day-open" />
              {d.open ? (
                <>
                  <TextInput type="time" aria-label={t("from")} value={d.start} w={120} error={byDay[d.day]}
                             onChange={(e) => setDay(d.day, { start: e.currentTarget.value })} data-testid="fr-day-start" />
                  <TextInput type="time" aria-label={t("to")} value={d.end} w={120}
                             onChange={(e) => setDay(d.day, { end: e.currentTarget.value })} data-testid="fr-day-end" />
                </>
              ) : <Text size="sm" c="dimmed" mt={8}>{t("frClosed")}</Text>}
            </Group>
          ))}
          {byDay.days && <Text c="red" size="xs">{byDay.days}</Text>}
          {byDay.day_hours && <Text c="red" size="xs">{byDay.day_hours}</Text>}
        </Stack>
      )}
    </Stack>
  );
}
