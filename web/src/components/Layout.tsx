import { Suspense, useEffect } from "react";
import { AppShell, Badge, Burger, Button, Group, Loader, NavLink, Select, Title } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { useTranslation } from "react-i18next";
import { NavLink as RouterLink, Outlet, useLocation } from "react-router-dom";
import { api } from "../api/client";
import { useSession } from "../auth";
import { LANGUAGES } from "../i18n";
import { useMe, usePermissions } from "../lib/me";
import { useStream } from "../stream";
import { CallPop } from "./CallPop";
import { NotificationsBell } from "./NotificationsBell";

export function Layout() {
  const { t, i18n } = useTranslation();
  const { user, signOut } = useSession();
  const { can } = usePermissions();
  const me = useMe();
  const live = useStream();
  const [opened, { toggle, close }] = useDisclosure();
  const location = useLocation();
  // the profile's language, unless this browser chose one
  useEffect(() => {
    const language = me.data?.language?.slice(0, 2);
    if (language && language in LANGUAGES && !localStorage.getItem("crm.language")) i18n.changeLanguage(language);
  }, [me.data?.language, i18n]);
  const choose = (language: string) => {
    i18n.changeLanguage(language);
    api.PATCH("/api/v1/users/me", { body: { language } }).catch(() => undefined);
  };
  // the permission a link needs ("a|b": either)
  const links: [string, string, string][] = [
    ["/today", t("today"), "tasks:read"], ["/dashboard", t("dashboard"), "reports:read"],
    ["/reports", t("reports"), "reports:read"], ["/contacts", t("contacts"), "contacts:read"],
    ["/companies", t("companies"), "companies:read"], ["/deals", t("deals"), "deals:read"],
    ["/tasks", t("tasks"), "tasks:read"], ["/calls", t("calls"), "calls:read"],
    ["/inbox", t("inbox"), "conversations:read"],
    ["/import", t("import"), "imports:write"],
    ["/settings/pipelines", t("pipelines"), "pipelines:read"],
    ["/settings/access", t("usersAndKeys"), "users:read"],
    ["/settings/telephony", t("telephony"), "telephony-settings:manage"],
    ["/settings/custom-fields", t("customFields"), "custom-fields:manage"],
    ["/settings/automation", t("automation"), "automation:read"],
    ["/settings/webhooks", t("webhooks"), "webhooks:manage"],
    ["/settings/forms", t("webForms"), "forms:read"],
    ["/settings/mailboxes", t("mailboxesAndChannels"), "mailboxes:manage"],
    ["/settings/templates", t("messageTemplates"), "templates:manage"],
    ["/settings/campaigns", t("campaigns"), "automation:read"],
    ["/settings/sales", t("sourcesAndTargets"), "lead-sources:read|targets:read"],
    ["/settings/audit", t("auditLog"), "audit:read"],
    ["/settings/dead-letters", t("deadLetters"), "operations:manage"],
    ["/settings/notifications", t("notificationSettings"), ""],
  ];
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 200, breakpoint: "sm", collapsed: { mobile: !opened } }}
              padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label={t("menu")} />
            <Title order={3}>{t("appName")}</Title>
            <Badge color={live ? "green" : "gray"} variant="dot" data-testid="live">
              {live ? t("live") : t("offline")}
            </Badge>
          </Group>
          <Group wrap="nowrap" gap="xs">
            <Select aria-label={t("language")} w={110} size="xs" value={i18n.language} allowDeselect={false}
                    data={Object.entries(LANGUAGES).map(([value, label]) => ({ value, label }))}
                    onChange={(value) => value && choose(value)} data-testid="language" />
            <NotificationsBell />
            <Button size="xs" variant="default" onClick={signOut} title={user?.email ?? ""} visibleFrom="xs">{t("signOut")}</Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" data-testid="navbar">
        {links.filter(([, , permission]) => !me.data || !permission || permission.split("|").some(can)).map(([to, label]) => (
          <NavLink key={to} component={RouterLink} to={to} label={label} onClick={close}
                   active={location.pathname.startsWith(to)} />
        ))}
        <NavLink label={t("signOut")} onClick={signOut} hiddenFrom="xs" />
      </AppShell.Navbar>
      <AppShell.Main data-testid="main">
        <Suspense fallback={<Loader m="xl" />}><Outlet /></Suspense>
        <CallPop />
      </AppShell.Main>
    </AppShell>
  );
}
