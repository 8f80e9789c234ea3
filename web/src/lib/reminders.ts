// Reminder lead times: the choices offered, how one reads ("15 min", "1 h", "1 day"), and
// the user's own (notification preferences' task_reminders: what a new task starts with).
import { useQuery } from "@tanstack/react-query";
import { api, ok } from "../api/client";

export const REMINDER_CHOICES = [0, 5, 10, 15, 30, 60, 120, 240, 1440, 2880] as const;

/** A lead time in minutes in the user's language, in the largest whole unit. */
export function leadLabel(minutes: number, language: string) {
  const [value, unit] = minutes && minutes % 1440 === 0 ? [minutes / 1440, "day"]
    : minutes && minutes % 60 === 0 ? [minutes / 60, "hour"] : [minutes, "minute"];
  return new Intl.NumberFormat(language, { style: "unit", unit, unitDisplay: "long" }).format(value);
}

export function useNotificationPrefs() {
  return useQuery({
    queryKey: ["notification-preferences"],
    staleTime: 5 * 60_000,
    queryFn: async () => ok(await api.GET("/api/v1/notification-preferences", {})),
  });
}
