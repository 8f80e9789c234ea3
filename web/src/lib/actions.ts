// Actions several screens share: click-to-call, complete / reschedule a task.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { notifications as toasts } from "@mantine/notifications";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";

export type Task = Schemas["TaskOut"];

/** Ring the agent's phone, then dial `to` (POST /calls); a refusal (no PBX, do-not-contact)
 * is shown with the API's reason. */
export function useClickToCall() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async ({ to, contactId }: { to?: string | null; contactId?: string | null }) => {
      let number = to;
      if (!number && contactId) {
        const contact = ok(await api.GET("/api/v1/contacts/{contact_id}", { params: { path: { contact_id: contactId } } }));
        if (contact.do_not_contact) throw new Error(t("doNotContact"));
        number = contact.phones?.[0]?.e164 ?? contact.phones?.[0]?.raw;
      }
      if (!number) throw new Error(t("noPhone"));
      return ok(await api.POST("/api/v1/calls", { body: { to: number, ...(contactId ? { contact_id: contactId } : {}) } }));
    },
    onSuccess: () => {
      toasts.show({ color: "green", message: t("calling") });
      queryClient.invalidateQueries({ queryKey: ["calls"] });
    },
    onError: (error) => toasts.show({ color: "red", title: t("callFailed"), message: (error as Error).message }),
  });
}

export function useCompleteTask() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async ({ task, result, next }: { task: Task; result?: string; next?: { title: string; due_at: string } }) => {
      const done = ok(await api.POST("/api/v1/tasks/{task_id}/complete", {
        params: { path: { task_id: task.id! } }, body: { result: result || null } }));
      if (next) {
        ok(await api.POST("/api/v1/tasks", { body: {
          title: next.title, due_at: next.due_at, kind: task.kind === "call" ? "call" : "todo", priority: "normal",
          contact_id: task.contact_id ?? null, deal_id: task.deal_id ?? null } }));
      }
      return done;
    },
    onSuccess: () => toasts.show({ color: "green", message: t("taskCompleted") }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["tasks"] }),
  });
}

export function useRescheduleTask() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async ({ task, due_at }: { task: Task; due_at: string }) =>
      ok(await api.PATCH("/api/v1/tasks/{task_id}", { params: { path: { task_id: task.id! } },
        body: { due_at, kind: (task.kind ?? "todo") as "todo", priority: (task.priority ?? "normal") as "normal" } })),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["tasks"] }),
  });
}

export function useCreateTask() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (body: Schemas["TaskIn"]) => ok(await api.POST("/api/v1/tasks", { body })),
    onSuccess: () => toasts.show({ color: "green", message: t("taskCreated") }),
    onSettled: () => { queryClient.invalidateQueries({ queryKey: ["tasks"] }); queryClient.invalidateQueries({ queryKey: ["contact"] }); },
  });
}
