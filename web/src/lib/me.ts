// The signed-in user (GET /users/me): their permissions (buttons a role may not use are
// not shown; the API still refuses them) and their locale (language, time zone).
import { useCallback, useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok } from "../api/client";
import { useSession } from "../auth";
import * as format from "./format";

export function useMe() {
  const { token } = useSession();
  return useQuery({
    queryKey: ["me"],
    enabled: !!token,
    staleTime: 5 * 60_000,
    queryFn: async () => ok(await api.GET("/api/v1/users/me", {})),
  });
}

/** can("deals:write"); scope("contacts:write") -> "all" | "team" | "own" | undefined */
export function usePermissions() {
  const me = useMe();
  const permissions = me.data?.permissions;
  const scope = useCallback((name: string) => permissions?.[name], [permissions]);
  const can = useCallback((name: string) => !!permissions?.[name], [permissions]);
  return { can, scope, loaded: !!permissions, me: me.data };
}

export function useLocale() {
  const { i18n } = useTranslation();
  const me = useMe();
  const language = i18n.language;
  const timeZone = me.data?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  return useMemo(() => ({
    language, timeZone,
    money: (amount?: number | null, currency?: string | null) => format.money(amount, currency, language),
    number: (value?: number | null) => format.number(value, language),
    dateTime: (iso?: string | null) => format.dateTime(iso, language, timeZone),
    date: (iso?: string | null) => format.date(iso, language, timeZone),
    time: (iso?: string | null) => format.time(iso, language, timeZone),
    today: () => format.dayKey(new Date(), timeZone),
  }), [language, timeZone]);
}
