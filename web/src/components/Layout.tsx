import { AppShell, Badge, Burger, Button, Group, NavLink, Select, Title } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { useTranslation } from "react-i18next";
import { NavLink as RouterLink, Outlet, useLocation } from "react-router-dom";
import { useSession } from "../auth";
import { LANGUAGES } from "../i18n";
import { useStream } from "../stream";
import { CallPop } from "./CallPop";
import { NotificationsBell } from "./NotificationsBell";

export function Layout() {
  const { t, i18n } = useTranslation();
  const { user, signOut } = useSession();
  const live = useStream();
  const [opened, { toggle, close }] = useDisclosure();
  const location = useLocation();
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 200, breakpoint: "sm", collapsed: { mobile: !opened } }}
              padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" />
            <Title order={3}>{t("appName")}</Title>
            <Badge color={live ? "green" : "gray"} variant="dot" data-testid="live">
              {live ? t("live") : t("offline")}
            </Badge>
          </Group>
          <Group wrap="nowrap" gap="xs">
            <Select aria-label={t("language")} w={110} size="xs" value={i18n.language} allowDeselect={false}
                    data={Object.entries(LANGUAGES).map(([value, label]) => ({ value, label }))}
                    onChange={(value) => value && i18n.changeLanguage(value)} data-testid="language" />
            <NotificationsBell />
            <Button size="xs" variant="default" onClick={signOut} title={user?.email ?? ""}>{t("signOut")}</Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs">
        {[["/contacts", t("contacts")], ["/deals", t("deals")]].map(([to, label]) => (
          <NavLink key={to} component={RouterLink} to={to} label={label} onClick={close}
                   active={location.pathname.startsWith(to)} />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>
        <Outlet />
        <CallPop />
      </AppShell.Main>
    </AppShell>
  );
}
