import { useEffect, useState } from "react";
import { Alert, Badge, Button, Card, Group, NumberInput, PasswordInput, Select, Stack, TagsInput, Text, TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { usePermissions } from "../lib/me";

type Provider = Schemas["TelephonyTestIn"]["provider"];
type Field = keyof Schemas["TelephonySettingsIn"];
// what each provider needs; secrets are write-only (the API says only whether each is set)
const FIELDS: Record<Provider, { name: Field; secret?: boolean; number?: boolean }[]> = {
  twilio: [{ name: "twilio_auth_token", secret: true }, { name: "twilio_shared_key_secret", secret: true }],
  zadarma: [{ name: "zadarma_api_key" }, { name: "zadarma_api_secret", secret: true }, { name: "zadarma_api_url" }],
  ami: [{ name: "ami_host" }, { name: "ami_port", number: true }, { name: "ami_username" }, { name: "ami_secret", secret: true },
        { name: "ami_context" }, { name: "ami_channel" }],
  connector: [{ name: "originate_url" }, { name: "originate_secret", secret: true }],
  http: [{ name: "originate_url" }, { name: "originate_secret", secret: true }],
};

/** The PBX connection (admins): a provider's settings, own numbers, click-to-call, and
 * "test connection" on what is saved (PATCH /settings/telephony, POST .../test). */
export function Telephony() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const [provider, setProvider] = useState<Provider>("ami");
  const [draft, setDraft] = useState<Record<string, unknown>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const settings = useQuery({
    queryKey: ["telephony-settings"],
    queryFn: async () => ok(await api.GET("/api/v1/settings/telephony", {})),
  });
  useEffect(() => { setDraft({}); setErrors({}); }, [provider]);
  const save = useMutation({
    mutationFn: async () => ok(await api.PATCH("/api/v1/settings/telephony", { body: draft as Schemas["TelephonySettingsIn"] })),
    onSuccess: (data) => { queryClient.setQueryData(["telephony-settings"], data); setDraft({}); setErrors({});
                           toasts.show({ color: "green", message: t("saved") }); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const test = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/settings/telephony/test", { body: { provider } })),
  });
  const current = settings.data as Record<string, unknown> | undefined;
  const writable = can("telephony-settings:manage");
  const value = (name: Field) => (name in draft ? draft[name] : current?.[name]) as string | number | undefined;
  const set = (name: Field, v: unknown) => setDraft((now) => ({ ...now, [name]: v === "" ? null : v }));
  return (
    <Stack maw={720}>
      <Title order={2}>{t("telephony")}</Title>
      <QueryState loading={settings.isLoading} error={settings.error} retry={() => settings.refetch()} />
      {current && (
        <Card withBorder>
          <Stack>
            <Select label={t("provider")} value={provider} allowDeselect={false} onChange={(v) => v && setProvider(v as Provider)}
                    data={(Object.keys(FIELDS) as Provider[]).map((p) => ({ value: p, label: t(`provider_${p}`) }))} data-testid="telephony-provider" />
            {FIELDS[provider].map(({ name, secret, number }) => {
              const state = settings.data?.secrets?.[name];
              const common = { key: name, label: name, error: errors[name], disabled: !writable, "data-testid": `tel-${name}` };
              if (secret) return <PasswordInput {...common} value={(draft[name] as string) ?? ""}
                                   placeholder={state?.set ? t("secretSet", { source: state.source }) : ""}
                                   onChange={(e) => set(name, e.currentTarget.value)} />;
              if (number) return <NumberInput {...common} value={value(name) ?? ""} onChange={(v) => set(name, v)} />;
              return <TextInput {...common} value={(value(name) as string) ?? ""} onChange={(e) => set(name, e.currentTarget.value)} />;
            })}
            <TagsInput label={t("ownNumbers")} value={(draft.own_numbers as string[]) ?? settings.data?.own_numbers ?? []}
                       onChange={(v) => set("own_numbers", v)} error={errors.own_numbers} disabled={!writable} />
            <Select label={t("clickToCallVia")} value={(value("originate") as string) ?? "none"} allowDeselect={false} disabled={!writable}
                    data={["none", "ami", "connector", "http"].map((o) => ({ value: o, label: o === "none" ? t("nobody") : t(`provider_${o}`) }))}
                    onChange={(v) => set("originate", v)} />
            {errors._ && <Text c="red" size="sm">{errors._}</Text>}
            <Group>
              {writable && <Button onClick={() => save.mutate()} loading={save.isPending} disabled={!Object.keys(draft).length}
                                   data-testid="telephony-save">{t("save")}</Button>}
              <Button variant="light" onClick={() => test.mutate()} loading={test.isPending} data-testid="telephony-test">{t("testConnection")}</Button>
            </Group>
            {test.error && <Alert color="red">{(test.error as Error).message}</Alert>}
            {test.data && (
              <Alert color={test.data.ok ? "green" : "red"} data-testid="telephony-test-result"
                     title={test.data.ok ? t("connectionOk") : `${t("connectionFailed")}: ${test.data.error ?? ""}`}>
                {(test.data.checks ?? []).map((c) => (
                  <Group key={c.check} gap="xs"><Badge color={c.ok ? "green" : "red"} size="xs">{c.ok ? "ok" : "✗"}</Badge>
                    <Text size="sm">{c.check}{c.detail ? ` — ${c.detail}` : ""}</Text></Group>
                ))}
              </Alert>
            )}
          </Stack>
        </Card>
      )}
    </Stack>
  );
}
