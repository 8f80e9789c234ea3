import { useState } from "react";
import { Alert, Badge, Button, Card, Checkbox, Grid, Group, Modal, NumberInput, PasswordInput, Select, Stack, Switch, Tabs, Text,
         TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useMediaQuery } from "@mantine/hooks";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { flatFieldErrors } from "../components/TaskDialogs";
import { useLocale, usePermissions } from "../lib/me";
import { ResponseHours } from "../components/ResponseHours";
import { defaultPort, hoursOf, serverDraft, serverPatch, smtpWithLogin, weekOf, type Security, type ServerDraft,
         type WeekDraft, type WorkingHoursApi } from "../lib/settings";

type Mailbox = Schemas["MailboxOut"];
type Channel = Schemas["ChannelOut"];
type Kind = Schemas["ChannelIn"]["kind"];
const STATE_COLOR: Record<string, string> = { ok: "green", error: "red", new: "gray" };
const SECURITIES: Security[] = ["tls", "starttls", "none"];
// the fields each kind of channel uses; the secrets are write-only
const KIND_FIELDS: Record<Kind, { plain: string[]; secret: string[] }> = {
  telegram: { plain: ["route_id"], secret: ["token"] },
  whatsapp: { plain: ["phone_number_id", "api_base"], secret: ["token", "app_secret", "verify_token"] },
  sms: { plain: ["url", "from_number"], secret: ["token", "app_secret"] },
};

const server = (protocol: "imap" | "smtp"): ServerDraft =>
  ({ host: "", port: defaultPort(protocol, "tls"), security: "tls", username: "", password: "", verify_tls: true });

function ServerFields({ protocol, value, onChange, errors, optionalLogin }: {
  protocol: "imap" | "smtp"; value: ServerDraft; onChange: (v: ServerDraft) => void; errors: Record<string, string>; optionalLogin?: boolean;
}) {
  const { t } = useTranslation();
  const err = (f: string) => errors[`${protocol}.${f}`];
  return (
    <Stack gap={4}>
      <Text fw={500} size="sm">{t(protocol === "imap" ? "mbImap" : "mbSmtp")}</Text>
      <Group grow align="flex-start" wrap="wrap">
        <TextInput label={t("mbHost")} required value={value.host} error={err("host")} miw={150}
                   onChange={(e) => onChange({ ...value, host: e.currentTarget.value })} data-testid={`mb-${protocol}-host`} />
        <NumberInput label={t("mbPort")} required value={value.port} min={1} max={65535} error={err("port")} maw={110}
                     onChange={(v) => onChange({ ...value, port: Number(v) || 0 })} data-testid={`mb-${protocol}-port`} />
        <Select label={t("mbSecurity")} value={value.security} allowDeselect={false} maw={150} error={err("security")}
                data-testid={`mb-${protocol}-security`}
                data={SECURITIES.map((s) => ({ value: s, label: t(`mbSecurity_${s}`) }))}
                onChange={(s) => s && onChange({ ...value, security: s as Security, port: defaultPort(protocol, s as Security) })} />
      </Group>
      <Group grow align="flex-start" wrap="wrap">
        <TextInput label={t("mbUsername")} required={!optionalLogin} value={value.username} error={err("username")} miw={150}
                   placeholder={optionalLogin && protocol === "smtp" ? t("mbSameAsImap") : undefined}
                   onChange={(e) => onChange({ ...value, username: e.currentTarget.value })} data-testid={`mb-${protocol}-username`} />
        <PasswordInput label={t("password")} required={!optionalLogin} value={value.password} error={err("password")} miw={150}
                       placeholder={optionalLogin && protocol === "smtp" ? t("mbSameAsImap") : undefined} autoComplete="new-password"
                       onChange={(e) => onChange({ ...value, password: e.currentTarget.value })} data-testid={`mb-${protocol}-password`} />
      </Group>
      <Checkbox size="xs" label={t("mbVerifyTls")} checked={value.verify_tls}
                onChange={(e) => onChange({ ...value, verify_tls: e.currentTarget.checked })} />
    </Stack>
  );
}

function ConnectMailbox() {
  const { t } = useTranslation();
  const { scope } = usePermissions();
  const queryClient = useQueryClient();
  const empty = () => ({ name: "", address: "", display_name: "", shared: false, imap: server("imap"), smtp: server("smtp") });
  const [draft, setDraft] = useState(empty);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/mailboxes", { body: {
      name: draft.name.trim(), address: draft.address.trim(), display_name: draft.display_name.trim(), shared: draft.shared,
      imap: { ...draft.imap, host: draft.imap.host.trim(), username: draft.imap.username.trim() },
      smtp: smtpWithLogin(draft.imap, { ...draft.smtp, host: draft.smtp.host.trim() || draft.imap.host.trim() }),
      active: true, folder: "INBOX", sent_folder: "Sent", poll_seconds: 60 } })),
    onSuccess: () => { setDraft(empty()); setErrors({}); queryClient.invalidateQueries({ queryKey: ["mailboxes"] }); },
    onError: (error) => setErrors(flatFieldErrors(error)),
  });
  return (
    <Card withBorder>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="mailbox-new">
        <Stack gap="xs">
          <Title order={5}>{t("mbConnect")}</Title>
          <Group grow align="flex-start" wrap="wrap">
            <TextInput label={t("name")} required value={draft.name} error={errors.name} miw={150}
                       onChange={(e) => setDraft({ ...draft, name: e.currentTarget.value })} data-testid="mb-name" />
            <TextInput label={t("mbAddress")} type="email" required value={draft.address} error={errors.address} miw={150}
                       onChange={(e) => setDraft({ ...draft, address: e.currentTarget.value })} data-testid="mb-address" />
          </Group>
          <TextInput label={t("mbDisplayName")} value={draft.display_name} error={errors.display_name}
                     onChange={(e) => setDraft({ ...draft, display_name: e.currentTarget.value })} />
          {scope("mailboxes:manage") === "all" && (
            <Switch label={t("mbShared")} description={t("mbSharedHint")} checked={draft.shared}
                    onChange={(e) => setDraft({ ...draft, shared: e.currentTarget.checked })} />
          )}
          <ServerFields protocol="imap" value={draft.imap} errors={errors} onChange={(imap) => setDraft({ ...draft, imap })} />
          <ServerFields protocol="smtp" value={draft.smtp} errors={errors} optionalLogin
                        onChange={(smtp) => setDraft({ ...draft, smtp })} />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button type="submit" loading={create.isPending} data-testid="mb-create">{t("mbConnect")}</Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}

/** Change a mailbox: a server side is sent whole (with its password typed again) only when
 * it changed; the API's errors land next to their fields. */
function EditMailbox({ mailbox, onClose }: { mailbox: Mailbox; onClose: () => void }) {
  const { t } = useTranslation();
  const narrow = useMediaQuery("(max-width: 480px)");
  const queryClient = useQueryClient();
  const locale = useLocale();
  const [draft, setDraft] = useState(() => ({ name: mailbox.name ?? "", display_name: mailbox.display_name ?? "",
    imap: serverDraft(mailbox.imap as never, "imap"), smtp: serverDraft(mailbox.smtp as never, "smtp") }));
  const [minutes, setMinutes] = useState<number | "">(mailbox.first_response_minutes ?? "");
  const [week, setWeek] = useState<WeekDraft>(() => weekOf(mailbox.working_hours as WorkingHoursApi | null, locale.timeZone));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const save = useMutation({
    mutationFn: async () => {
      const imap = serverPatch(mailbox.imap as never, draft.imap);
      const smtp = serverPatch(mailbox.smtp as never, draft.smtp);
      return ok(await api.PATCH("/api/v1/mailboxes/{mailbox_id}", { params: { path: { mailbox_id: mailbox.id! } }, body: {
        name: draft.name.trim(), display_name: draft.display_name.trim(), ...(imap ? { imap } : {}), ...(smtp ? { smtp } : {}),
        first_response_minutes: minutes === "" ? null : minutes, working_hours: hoursOf(week).hours,
      } as Schemas["MailboxIn"] }));
    },
    onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["mailboxes"] }); onClose(); },
    onError: (error) => setErrors(flatFieldErrors(error)),
  });
  return (
    <Modal opened onClose={onClose} title={t("mbEdit")} size="lg" fullScreen={narrow}>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }} data-testid="mailbox-edit-form">
        <Stack gap="xs">
          <Group grow align="flex-start" wrap="wrap">
            <TextInput label={t("name")} required value={draft.name} error={errors.name} miw={150}
                       onChange={(e) => setDraft({ ...draft, name: e.currentTarget.value })} />
            <TextInput label={t("mbDisplayName")} value={draft.display_name} error={errors.display_name} miw={150}
                       onChange={(e) => setDraft({ ...draft, display_name: e.currentTarget.value })} />
          </Group>
          <Text size="xs" c="dimmed">{t("mbPasswordAgain")}</Text>
          <ServerFields protocol="imap" value={draft.imap} errors={errors} optionalLogin onChange={(imap) => setDraft({ ...draft, imap })} />
          <ServerFields protocol="smtp" value={draft.smtp} errors={errors} optionalLogin onChange={(smtp) => setDraft({ ...draft, smtp })} />
          <Text fw={500} size="sm" mt="xs">{t("frTitle")}</Text>
          <ResponseHours minutes={minutes} onMinutes={setMinutes} week={week} onWeek={setWeek} errors={errors} />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button type="submit" loading={save.isPending} data-testid="mailbox-edit-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** "First response in 30 min · Mon-Fri 09:00-18:00, Sat 10:00-12:00 (Europe/Rome)" */
function ResponseSummary({ minutes, hours }: { minutes?: number | null; hours?: WorkingHoursApi | null }) {
  const { t, i18n } = useTranslation();
  if (minutes === null || minutes === undefined) return null;
  const day = (d: number) => new Intl.DateTimeFormat(i18n.language, { weekday: "short", timeZone: "UTC" })
    .format(new Date(Date.UTC(2024, 0, d)));  // 2024-01-01 was a Monday
  const week = hours ? weekOf(hours).days.filter((d) => d.open).map((d) => `${day(d.day)} ${d.start}–${d.end}`).join(", ") : "";
  return (
    <Text size="xs" c="dimmed" data-testid="response-summary">
      {t("frSummary", { minutes })}{hours ? ` · ${week} (${hours.timezone ?? "UTC"})` : ` · ${t("frAlways")}`}
    </Text>
  );
}

function MailboxCard({ mailbox }: { mailbox: Mailbox }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const state = mailbox.state ?? {};
  const [editing, setEditing] = useState(false);
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["mailboxes"] });
  const fail = (error: unknown) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message });
  const sync = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/mailboxes/{mailbox_id}/sync", { params: { path: { mailbox_id: mailbox.id! } } })),
    onSuccess: () => toasts.show({ color: "green", message: t("mbSyncing") }), onError: fail, onSettled: refresh,
  });
  const toggle = useMutation({
    mutationFn: async (active: boolean) => ok(await api.PATCH("/api/v1/mailboxes/{mailbox_id}", {
      params: { path: { mailbox_id: mailbox.id! } }, body: { active } as Schemas["MailboxIn"] })),
    onError: fail, onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: async () => ok(await api.DELETE("/api/v1/mailboxes/{mailbox_id}", { params: { path: { mailbox_id: mailbox.id! } } })),
    onError: fail, onSettled: refresh,
  });
  return (
    <Card withBorder padding="sm" data-testid={`mailbox-${mailbox.id}`}>
      <Group justify="space-between" wrap="nowrap" align="flex-start">
        <Stack gap={2} style={{ minWidth: 0 }}>
          <Group gap="xs">
            <Text fw={500}>{mailbox.name}</Text>
            <Badge color={STATE_COLOR[state.status ?? "new"] ?? "gray"} variant="light" data-testid="mailbox-status">
              {t(`mbState_${state.status ?? "new"}`, { defaultValue: state.status })}</Badge>
            {mailbox.shared && <Badge variant="outline" size="xs">{t("mbSharedShort")}</Badge>}
            {state.idle && <Badge variant="outline" size="xs" color="teal">IDLE</Badge>}
          </Group>
          <Text size="sm" style={{ wordBreak: "break-all" }}>{mailbox.address}</Text>
          <Text size="xs" c="dimmed" style={{ wordBreak: "break-all" }}>
            {mailbox.imap?.host}:{mailbox.imap?.port} · {t("mbSynced", { count: state.synced ?? 0 })}
            {state.last_sync_at ? ` · ${t("mbLastSync")} ${locale.dateTime(state.last_sync_at)}` : ""}
          </Text>
          <ResponseSummary minutes={mailbox.first_response_minutes} hours={mailbox.working_hours as WorkingHoursApi | null} />
          {state.last_error && <Text size="xs" c="red" style={{ wordBreak: "break-word" }} data-testid="mailbox-error">
            {state.last_error}{state.failures ? ` (${t("mbFailures", { count: state.failures })})` : ""}</Text>}
        </Stack>
        <Stack gap={4} align="flex-end">
          <Switch size="xs" checked={mailbox.active !== false} label={t("active")} onChange={(e) => toggle.mutate(e.currentTarget.checked)} />
          <Button size="compact-xs" variant="light" loading={sync.isPending} onClick={() => sync.mutate()} data-testid="mailbox-sync">{t("mbSyncNow")}</Button>
          <Button size="compact-xs" variant="subtle" onClick={() => setEditing(true)} data-testid="mailbox-edit">{t("edit")}</Button>
          <Button size="compact-xs" color="red" variant="subtle" onClick={() => remove.mutate()} data-testid="mailbox-delete">{t("mbDisconnect")}</Button>
        </Stack>
      </Group>
      {editing && <EditMailbox mailbox={mailbox} onClose={() => setEditing(false)} />}
    </Card>
  );
}

function Mailboxes() {
  const { t } = useTranslation();
  const mailboxes = useQuery({
    queryKey: ["mailboxes"],
    refetchInterval: 5000,  // the sync state changes on its own
    queryFn: async () => ok(await api.GET("/api/v1/mailboxes", { params: { query: { limit: 200 } } })).items ?? [],
  });
  return (
    <Grid>
      <Grid.Col span={{ base: 12, md: 6 }}><ConnectMailbox /></Grid.Col>
      <Grid.Col span={{ base: 12, md: 6 }}>
        <Stack data-testid="mailboxes">
          <QueryState loading={mailboxes.isLoading} error={mailboxes.error} retry={() => mailboxes.refetch()} />
          {mailboxes.data && !mailboxes.data.length && <Text c="dimmed">{t("mbNone")}</Text>}
          {(mailboxes.data ?? []).map((m) => <MailboxCard key={m.id} mailbox={m} />)}
        </Stack>
      </Grid.Col>
    </Grid>
  );
}

const useChannelRoutes = () => useQuery({
  queryKey: ["forms", "channel"],
  queryFn: async () => ok(await api.GET("/api/v1/forms", { params: { query: { kind: "channel", limit: 200 } } })).items ?? [],
});

/** A Telegram channel's inbound route, picked by name among the routes of channel telegram
 * (POST /forms kind=channel); none yet: how to make one. */
function RoutePicker({ value, onChange, error }: { value: string; onChange: (id: string) => void; error?: string }) {
  const { t } = useTranslation();
  const routes = useChannelRoutes();
  const telegram = (routes.data ?? []).filter((r) => r.channel === "telegram");
  const data = telegram.map((r) => ({ value: r.id!, label: r.active === false ? `${r.name} (${t("chRouteOff")})` : r.name! }));
  if (value && !data.some((d) => d.value === value)) data.push({ value, label: value });  // a route gone or not listed
  return (
    <Stack gap={4}>
      <Select label={t("chField_route_id")} description={t("chRouteHint")} placeholder={t("chRoutePick")} searchable clearable
              value={value || null} data={data} error={error} disabled={routes.isLoading}
              onChange={(v) => onChange(v ?? "")} data-testid="ch-route_id" />
      <QueryState loading={false} error={routes.error} retry={() => routes.refetch()} />
      {routes.data && !telegram.length && (
        <Alert color="blue" variant="light" data-testid="ch-no-routes">{t("chNoRoutes")}</Alert>
      )}
      <NewTelegramRoute onMade={onChange} />
    </Stack>
  );
}

/** A Telegram route made here: its secret token is generated in the browser and shown once,
 * with the webhook URL, for the bot's setWebhook (the API never returns the token). */
function NewTelegramRoute({ onMade }: { onMade: (id: string) => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [name, setName] = useState<string | null>(null);
  const [made, setMade] = useState<{ url: string; secret: string } | null>(null);
  const create = useMutation({
    mutationFn: async (routeName: string) => {
      const secret = randomToken();
      const route = ok(await api.POST("/api/v1/forms", { body: {
        name: routeName, kind: "channel", channel: "telegram", source: "telegram", telegram_secret_token: secret,
        active: true, honeypot_field: "company_website" } }));
      return { route, secret };
    },
    onSuccess: async ({ route, secret }) => {
      await queryClient.invalidateQueries({ queryKey: ["forms"] });
      onMade(route.id!);
      setMade({ url: `${window.location.origin}/api/v1/inbound/telegram/${route.key}`, secret });
      setName(null);
    },
  });
  const errors = flatFieldErrors(create.error);
  if (made) {
    return (
      <Alert color="green" variant="light" data-testid="ch-route-made" withCloseButton onClose={() => setMade(null)}>
        <Text size="sm">{t("chRouteMade")}</Text>
        <Text size="xs" ff="monospace" style={{ wordBreak: "break-all" }} data-testid="ch-route-url">{made.url}</Text>
        <Text size="xs" ff="monospace" style={{ wordBreak: "break-all" }} data-testid="ch-route-secret">{made.secret}</Text>
      </Alert>
    );
  }
  if (name === null) {
    return <Button variant="subtle" size="xs" onClick={() => setName("")} data-testid="ch-route-new">{t("chRouteNew")}</Button>;
  }
  return (
    <Group align="flex-end" wrap="wrap">
      <TextInput label={t("chRouteName")} value={name} onChange={(e) => setName(e.currentTarget.value)} miw={180}
                 error={create.error ? errors.name ?? errors._ ?? Object.values(errors)[0] : undefined}
                 data-testid="ch-route-name" />
      <Button size="xs" loading={create.isPending} disabled={!name.trim()} onClick={() => create.mutate(name.trim())}
              data-testid="ch-route-create">{t("chRouteCreate")}</Button>
      <Button size="xs" variant="default" onClick={() => setName(null)}>{t("cancel")}</Button>
    </Group>
  );
}

function randomToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function NewChannel() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [kind, setKind] = useState<Kind>("telegram");
  const [name, setName] = useState("");
  const [values, setValues] = useState<Record<string, string>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/channels", { body: {
      kind, name: name.trim(), active: true,
      ...Object.fromEntries([...KIND_FIELDS[kind].plain, ...KIND_FIELDS[kind].secret]
        .filter((f) => values[f]?.trim()).map((f) => [f, values[f].trim()])) } })),
    onSuccess: () => { setName(""); setValues({}); setErrors({}); queryClient.invalidateQueries({ queryKey: ["channels"] }); },
    onError: (error) => setErrors(flatFieldErrors(error)),
  });
  const set = (f: string, v: string) => setValues({ ...values, [f]: v });
  return (
    <Card withBorder>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="channel-new">
        <Stack gap="xs">
          <Title order={5}>{t("chNew")}</Title>
          <Group grow align="flex-start" wrap="wrap">
            <Select label={t("kind")} value={kind} allowDeselect={false} miw={140} data-testid="ch-kind"
                    data={(Object.keys(KIND_FIELDS) as Kind[]).map((k) => ({ value: k, label: t(`chKind_${k}`) }))}
                    onChange={(k) => { if (k) { setKind(k as Kind); setValues({}); setErrors({}); } }} />
            <TextInput label={t("name")} required value={name} error={errors.name} miw={150}
                       onChange={(e) => setName(e.currentTarget.value)} data-testid="ch-name" />
          </Group>
          {KIND_FIELDS[kind].plain.map((f) => (f === "route_id"
            ? <RoutePicker key={f} value={values[f] ?? ""} error={errors[f]} onChange={(v) => set(f, v)} />
            : <TextInput key={f} label={t(`chField_${f}`)} value={values[f] ?? ""} error={errors[f]}
                         onChange={(e) => set(f, e.currentTarget.value)} data-testid={`ch-${f}`} />
          ))}
          {KIND_FIELDS[kind].secret.map((f) => (
            <PasswordInput key={f} label={t(`chField_${f}`)} description={t("chSecretHint")} value={values[f] ?? ""} error={errors[f]}
                           autoComplete="new-password" onChange={(e) => set(f, e.currentTarget.value)} data-testid={`ch-${f}`} />
          ))}
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end"><Button type="submit" loading={create.isPending} data-testid="ch-create">{t("chCreate")}</Button></Group>
        </Stack>
      </form>
    </Card>
  );
}

/** Change a channel: its name and plain fields; a secret typed replaces the stored one, a
 * blank one keeps it. */
function EditChannel({ channel, onClose }: { channel: Channel; onClose: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const fields = KIND_FIELDS[(channel.kind ?? "telegram") as Kind] ?? KIND_FIELDS.telegram;
  const locale = useLocale();
  const narrow = useMediaQuery("(max-width: 480px)");
  const [name, setName] = useState(channel.name ?? "");
  const [minutes, setMinutes] = useState<number | "">(channel.first_response_minutes ?? "");
  const [week, setWeek] = useState<WeekDraft>(() => weekOf(channel.working_hours as WorkingHoursApi | null, locale.timeZone));
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(fields.plain.map((f) => [f, String((channel as Record<string, unknown>)[f] ?? "")])));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const save = useMutation({
    mutationFn: async () => ok(await api.PATCH("/api/v1/channels/{channel_id}", { params: { path: { channel_id: channel.id! } }, body: {
      name: name.trim(),
      ...Object.fromEntries(fields.plain.map((f) => [f, values[f]?.trim() || null])),
      ...Object.fromEntries(fields.secret.filter((f) => values[f]).map((f) => [f, values[f]])),
      first_response_minutes: minutes === "" ? null : minutes, working_hours: hoursOf(week).hours,
    } as Schemas["ChannelIn"] })),
    onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["channels"] }); onClose(); },
    onError: (error) => setErrors(flatFieldErrors(error)),
  });
  const set = (f: string, v: string) => setValues({ ...values, [f]: v });
  return (
    <Modal opened onClose={onClose} title={t("chEdit")} size="lg" fullScreen={narrow}>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }} data-testid="channel-edit-form">
        <Stack gap="xs">
          <TextInput label={t("name")} required value={name} error={errors.name} onChange={(e) => setName(e.currentTarget.value)} />
          {fields.plain.map((f) => (f === "route_id"
            ? <RoutePicker key={f} value={values[f] ?? ""} error={errors[f]} onChange={(v) => set(f, v)} />
            : <TextInput key={f} label={t(`chField_${f}`)} value={values[f] ?? ""} error={errors[f]}
                         onChange={(e) => set(f, e.currentTarget.value)} data-testid={`ch-${f}`} />
          ))}
          {fields.secret.map((f) => (
            <PasswordInput key={f} label={t(`chField_${f}`)} value={values[f] ?? ""} error={errors[f]} autoComplete="new-password"
                           placeholder={channel.secrets?.[f] ? t("chKeepSecret") : undefined}
                           onChange={(e) => set(f, e.currentTarget.value)} data-testid={`ch-${f}`} />
          ))}
          <Text fw={500} size="sm" mt="xs">{t("frTitle")}</Text>
          <ResponseHours minutes={minutes} onMinutes={setMinutes} week={week} onWeek={setWeek} errors={errors} />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button type="submit" loading={save.isPending} data-testid="channel-edit-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

function RouteName({ id }: { id?: string | null }) {
  const { t } = useTranslation();
  const routes = useChannelRoutes();
  if (!id) return <Text size="xs" c="orange">{t("chNoRoute")}</Text>;
  const route = routes.data?.find((r) => r.id === id);
  return <Text size="xs" c="dimmed" data-testid="channel-route">{t("chField_route_id")}: {route?.name ?? id}</Text>;
}

function Channels() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const channels = useQuery({
    queryKey: ["channels"],
    queryFn: async () => ok(await api.GET("/api/v1/channels", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["channels"] });
  const [editing, setEditing] = useState<Channel | null>(null);
  const toggle = useMutation({
    mutationFn: async ({ id, active }: { id: string; active: boolean }) => ok(await api.PATCH("/api/v1/channels/{channel_id}", {
      params: { path: { channel_id: id } }, body: { active } as Schemas["ChannelIn"] })),
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/channels/{channel_id}", { params: { path: { channel_id: id } } })),
    onSettled: refresh,
  });
  return (
    <Grid>
      <Grid.Col span={{ base: 12, md: 6 }}><NewChannel /></Grid.Col>
      <Grid.Col span={{ base: 12, md: 6 }}>
        <Stack data-testid="channels">
          <QueryState loading={channels.isLoading} error={channels.error} retry={() => channels.refetch()} />
          {channels.data && !channels.data.length && <Text c="dimmed">{t("chNone")}</Text>}
          {(channels.data ?? []).map((c: Channel) => (
            <Card key={c.id} withBorder padding="sm" data-testid={`channel-${c.id}`}>
              <Group justify="space-between" wrap="nowrap" align="flex-start">
                <Stack gap={2} style={{ minWidth: 0 }}>
                  <Group gap="xs"><Text fw={500}>{c.name}</Text><Badge variant="light">{t(`chKind_${c.kind}`, { defaultValue: c.kind })}</Badge></Group>
                  <Text size="xs" c="dimmed" style={{ wordBreak: "break-all" }}>{c.phone_number_id || c.from_number || c.url || ""}</Text>
                  {c.kind === "telegram" && <RouteName id={c.route_id} />}
                  <ResponseSummary minutes={c.first_response_minutes} hours={c.working_hours as WorkingHoursApi | null} />
                  <Group gap={2}>{Object.keys(c.secrets ?? {}).filter((s) => c.secrets?.[s]).map((s) => (
                    <Badge key={s} size="xs" variant="outline" color="teal">{t(`chField_${s}`, { defaultValue: s })} ✓</Badge>))}</Group>
                </Stack>
                <Stack gap={4} align="flex-end">
                  <Switch size="xs" checked={c.active !== false} label={t("active")}
                          onChange={(e) => toggle.mutate({ id: c.id!, active: e.currentTarget.checked })} />
                  <Button size="compact-xs" variant="subtle" onClick={() => setEditing(c)} data-testid="channel-edit">{t("edit")}</Button>
                  <Button size="compact-xs" color="red" variant="subtle" onClick={() => remove.mutate(c.id!)} data-testid="channel-delete">{t("remove")}</Button>
                </Stack>
              </Group>
            </Card>
          ))}
        </Stack>
        {editing && <EditChannel key={editing.id} channel={editing} onClose={() => setEditing(null)} />}
      </Grid.Col>
    </Grid>
  );
}

/** Settings → Mailboxes and messengers: IMAP/SMTP mailboxes with their sync state and last
 * error, and (admins) Telegram / WhatsApp / SMS channels. Passwords and tokens are write-only. */
export function MailboxSettings() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  return (
    <Stack>
      <Title order={2}>{t("mailboxesAndChannels")}</Title>
      <Tabs defaultValue="mailboxes" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="mailboxes">{t("mailboxes")}</Tabs.Tab>
          {can("channels:manage") && <Tabs.Tab value="channels" data-testid="tab-channels">{t("messengers")}</Tabs.Tab>}
        </Tabs.List>
        <Tabs.Panel value="mailboxes" pt="md"><Mailboxes /></Tabs.Panel>
        {can("channels:manage") && <Tabs.Panel value="channels" pt="md"><Channels /></Tabs.Panel>}
      </Tabs>
    </Stack>
  );
}
