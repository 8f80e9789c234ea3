import { useEffect, useState } from "react";
import { Button, Group, Modal, MultiSelect, Select, Stack, Text, TextInput, Textarea } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";
import { needsNextStep } from "../lib/agenda";
import { useCompleteTask, useCreateTask, type Task } from "../lib/actions";
import { addDays, zonedParts, zonedToUtc } from "../lib/format";
import { useLocale } from "../lib/me";
import { leadLabel, REMINDER_CHOICES, useNotificationPrefs } from "../lib/reminders";
import { flatErrors } from "../lib/settings";

/** "YYYY-MM-DDTHH:mm" (a datetime-local input) in the user's zone <-> UTC ISO. */
export function toLocalInput(iso: string, timeZone: string) {
  const p = zonedParts(new Date(iso), timeZone);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${p.year}-${two(p.month)}-${two(p.day)}T${two(p.hour)}:${two(p.minute)}`;
}
export function fromLocalInput(value: string, timeZone: string) {
  const [day, clock = "09:00"] = value.split("T");
  const [h, m] = clock.split(":").map(Number);
  return zonedToUtc(day, h, m, timeZone).toISOString();
}

/** Completing a call task asks for its result and, required, the next step. */
export function CompleteDialog({ task, onClose }: { task: Task | null; onClose: () => void }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const complete = useCompleteTask();
  const [result, setResult] = useState("");
  const [next, setNext] = useState("");
  const [due, setDue] = useState("");
  useEffect(() => {
    setResult(""); setNext("");
    setDue(`${addDays(locale.today(), 1)}T10:00`);
  }, [task, locale]);
  const required = !!task && needsNextStep(task);
  return (
    <Modal opened={!!task} onClose={onClose} title={t("completeTask")}>
      {task && (
        <form onSubmit={(e) => {
          e.preventDefault();
          if (required && (!next.trim() || !due)) return;
          complete.mutate({ task, result: result.trim(), next: required ? { title: next.trim(),
            due_at: fromLocalInput(due, locale.timeZone) } : undefined }, { onSuccess: onClose });
        }}>
          <Stack>
            <Text fw={600}>{task.title}</Text>
            <Textarea label={t("result")} value={result} onChange={(e) => setResult(e.currentTarget.value)}
                      data-testid="complete-result" data-autofocus />
            {required && (
              <>
                <TextInput label={t("nextStep")} required value={next} data-testid="next-step"
                           description={t("nextStepRequired")} onChange={(e) => setNext(e.currentTarget.value)} />
                <TextInput type="datetime-local" label={t("due")} required value={due}
                           onChange={(e) => setDue(e.currentTarget.value)} data-testid="next-step-due" />
              </>
            )}
            <Group justify="flex-end">
              <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
              <Button type="submit" loading={complete.isPending} disabled={required && !next.trim()}
                      data-testid="complete-submit">{t("complete")}</Button>
            </Group>
          </Stack>
        </form>
      )}
    </Modal>
  );
}

/** A new task, optionally for a contact or deal. */
export function CreateTaskDialog({ opened, onClose, contactId, dealId, title: initialTitle = "" }: {
  opened: boolean; onClose: () => void; contactId?: string | null; dealId?: string | null; title?: string }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const create = useCreateTask();
  const [title, setTitle] = useState(initialTitle);
  const [kind, setKind] = useState<"call" | "meeting" | "email" | "todo">("call");
  const [due, setDue] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const prefs = useNotificationPrefs();
  const [reminders, setReminders] = useState<string[]>([]);
  useEffect(() => {
    if (!opened) return;
    setTitle(initialTitle); setErrors({});
    setDue(`${addDays(locale.today(), 1)}T10:00`);
    setReminders((prefs.data?.task_reminders ?? [15]).map(String));
  }, [opened, initialTitle, locale, prefs.data]);
  return (
    <Modal opened={opened} onClose={onClose} title={t("newTask")}>
      <form onSubmit={(e) => {
        e.preventDefault();
        create.mutate({ title: title.trim(), kind, priority: "normal", due_at: due ? fromLocalInput(due, locale.timeZone) : null,
                        contact_id: contactId ?? null, deal_id: dealId ?? null,
                        reminders: due ? reminders.map(Number) : [] }, {
          onSuccess: onClose,
          onError: (error) => setErrors(fieldErrors(error)),
        });
      }}>
        <Stack>
          <TextInput label={t("title")} required value={title} error={errors.title} data-autofocus
                     onChange={(e) => setTitle(e.currentTarget.value)} data-testid="task-title" />
          <Select label={t("kind")} value={kind} allowDeselect={false} onChange={(v) => v && setKind(v as typeof kind)}
                  data={(["call", "meeting", "email", "todo"] as const).map((k) => ({ value: k, label: t(`kind_${k}`) }))} />
          <TextInput type="datetime-local" label={t("due")} value={due} error={errors.due_at}
                     onChange={(e) => setDue(e.currentTarget.value)} />
          {due && (
            <MultiSelect label={t("reminders")} value={reminders} onChange={setReminders} error={errors.reminders}
                         data={REMINDER_CHOICES.map((m) => ({ value: String(m), label: leadLabel(m, locale.language) }))}
                         data-testid="task-reminders" />
          )}
          {errors._ && <Text c="red" size="sm">{errors._}</Text>}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button type="submit" loading={create.isPending} data-testid="task-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** The API's per-field errors ({details: {fields: {name: [message]}}}), "_" for the rest. */
/** fieldErrors with nested ones flattened to dotted keys ("imap.host"), for forms with sub-objects. */
export function flatFieldErrors(error: unknown): Record<string, string> {
  const fields = error instanceof ApiError ? (error.details?.fields ?? {}) as Record<string, unknown> : {};
  const out = flatErrors(fields);
  return Object.keys(out).length ? out : fieldErrors(error);
}

export function fieldErrors(error: unknown): Record<string, string> {
  if (error instanceof ApiError) {
    const fields = (error.details?.fields ?? {}) as Record<string, unknown>;
    const out: Record<string, string> = {};
    for (const [name, messages] of Object.entries(fields)) {
      out[name] = Array.isArray(messages) ? messages.map(String).join(" ") : JSON.stringify(messages);
    }
    if (!Object.keys(out).length) out._ = error.message;
    return out;
  }
  return { _: (error as Error)?.message ?? String(error) };
}
