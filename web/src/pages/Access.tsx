import { useState } from "react";
import { Alert, Badge, Button, Code, CopyButton, Group, Modal, PasswordInput, Select, Stack, Switch, Table, Tabs, TagsInput,
         Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { useLocale, usePermissions } from "../lib/me";

const ROLES = ["agent", "manager", "admin"] as const;
const SCOPES = ["contacts:read", "contacts:write", "companies:read", "companies:write", "deals:read", "deals:write",
  "pipelines:read", "pipelines:write", "tasks:read", "tasks:write", "task-rules:read", "task-rules:write", "calls:read",
  "calls:write", "telephony:write", "imports:read", "imports:write", "inbound:write", "reports:read", "targets:read",
  "targets:write", "lead-sources:read", "lead-sources:write"];

function Users() {
  const { t } = useTranslation();
  const { can, me } = usePermissions();
  const queryClient = useQueryClient();
  const users = useQuery({
    queryKey: ["users"],
    queryFn: async () => ok(await api.GET("/api/v1/users", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const [open, setOpen] = useState(false);
  const [draft, setDraft] = useState({ name: "", email: "", password: "", role: "agent", team: "", extension: "" });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/users", { body: {
      name: draft.name, email: draft.email, password: draft.password, role: draft.role as "agent",
      team: draft.team || null, extension: draft.extension || null } })),
    onSuccess: () => { setOpen(false); queryClient.invalidateQueries({ queryKey: ["users"] }); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const update = useMutation({
    mutationFn: async ({ id, body }: { id: string; body: { role?: "agent"; active?: boolean } }) =>
      ok(await api.PATCH("/api/v1/users/{user_id}", { params: { path: { user_id: id } }, body: body as Schemas["UserIn"] })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["users"] }),
  });
  const writable = can("users:write");
  return (
    <Stack>
      {writable && <Group justify="flex-end"><Button onClick={() => { setErrors({}); setDraft({ name: "", email: "", password: "", role: "agent", team: "", extension: "" }); setOpen(true); }}
                                                    data-testid="new-user">{t("newUser")}</Button></Group>}
      <QueryState loading={users.isLoading} error={users.error} retry={() => users.refetch()} />
      <Table.ScrollContainer minWidth={360}>
        <Table data-testid="users-table">
          <Table.Thead><Table.Tr><Table.Th>{t("name")}</Table.Th><Table.Th>{t("email")}</Table.Th><Table.Th>{t("role")}</Table.Th>
            <Table.Th visibleFrom="sm">{t("team")}</Table.Th><Table.Th visibleFrom="sm">{t("extension")}</Table.Th><Table.Th>{t("active")}</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>
            {(users.data ?? []).map((u) => (
              <Table.Tr key={u.id} data-testid={`user-${u.id}`}>
                <Table.Td>{u.name}</Table.Td><Table.Td>{u.email}</Table.Td>
                <Table.Td>{writable && u.id !== me?.id ? (
                  <Select size="xs" w={120} value={u.role ?? "agent"} allowDeselect={false} aria-label={t("role")}
                          data={ROLES.map((r) => ({ value: r, label: t(`role_${r}`) }))}
                          onChange={(v) => v && update.mutate({ id: u.id!, body: { role: v as "agent" } })} />
                ) : <Badge variant="light">{t(`role_${u.role ?? "agent"}`)}</Badge>}</Table.Td>
                <Table.Td visibleFrom="sm">{u.team}</Table.Td><Table.Td visibleFrom="sm">{u.extension}</Table.Td>
                <Table.Td><Switch checked={u.active !== false} disabled={!writable || u.id === me?.id} aria-label={t("active")}
                                  onChange={(e) => update.mutate({ id: u.id!, body: { active: e.currentTarget.checked } })} /></Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      <Modal opened={open} onClose={() => setOpen(false)} title={t("newUser")}>
        <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }}>
          <Stack>
            <TextInput label={t("name")} required value={draft.name} error={errors.name} onChange={(e) => setDraft({ ...draft, name: e.currentTarget.value })} data-testid="user-name" />
            <TextInput label={t("email")} required type="email" value={draft.email} error={errors.email} onChange={(e) => setDraft({ ...draft, email: e.currentTarget.value })} data-testid="user-email" />
            <PasswordInput label={t("password")} required value={draft.password} error={errors.password} onChange={(e) => setDraft({ ...draft, password: e.currentTarget.value })} data-testid="user-password" />
            <Group grow>
              <Select label={t("role")} value={draft.role} allowDeselect={false} data={ROLES.map((r) => ({ value: r, label: t(`role_${r}`) }))}
                      onChange={(v) => v && setDraft({ ...draft, role: v })} error={errors.role} />
              <TextInput label={t("team")} value={draft.team} error={errors.team} onChange={(e) => setDraft({ ...draft, team: e.currentTarget.value })} />
              <TextInput label={t("extension")} value={draft.extension} error={errors.extension} onChange={(e) => setDraft({ ...draft, extension: e.currentTarget.value })} />
            </Group>
            {errors._ && <Alert color="red">{errors._}</Alert>}
            <Group justify="flex-end"><Button type="submit" loading={create.isPending} data-testid="user-save">{t("save")}</Button></Group>
          </Stack>
        </form>
      </Modal>
    </Stack>
  );
}

function ApiKeys() {
  const { t } = useTranslation();
  const locale = useLocale();
  const queryClient = useQueryClient();
  const keys = useQuery({
    queryKey: ["api-keys"],
    queryFn: async () => ok(await api.GET("/api/v1/api-keys", { params: { query: { limit: 200 } } })).items ?? [],
  });
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>([]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [created, setCreated] = useState<Schemas["ApiKeyCreated"] | null>(null);
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/api-keys", { body: { name: name.trim(), scopes } })),
    onSuccess: (key) => { setCreated(key); setName(""); setScopes([]); queryClient.invalidateQueries({ queryKey: ["api-keys"] }); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const revoke = useMutation({
    mutationFn: async (id: string) => ok(await api.DELETE("/api/v1/api-keys/{key_id}", { params: { path: { key_id: id } } })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["api-keys"] }),
  });
  return (
    <Stack>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }}>
        <Group align="flex-end">
          <TextInput label={t("name")} required value={name} error={errors.name} onChange={(e) => setName(e.currentTarget.value)} data-testid="key-name" />
          <TagsInput label={t("scopes")} value={scopes} onChange={setScopes} data={SCOPES} error={errors.scopes} w={420} data-testid="key-scopes" />
          <Button type="submit" loading={create.isPending} data-testid="key-create">{t("createKey")}</Button>
        </Group>
      </form>
      {errors._ && <Alert color="red">{errors._}</Alert>}
      {created?.key && (
        <Alert color="yellow" title={t("keyShownOnce")} data-testid="key-created" withCloseButton onClose={() => setCreated(null)}>
          <Group><Code data-testid="key-secret">{created.key}</Code>
            <CopyButton value={created.key}>{({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? t("copied") : t("copy")}</Button>}</CopyButton></Group>
        </Alert>
      )}
      <QueryState loading={keys.isLoading} error={keys.error} retry={() => keys.refetch()} />
      <Table.ScrollContainer minWidth={360}>
        <Table data-testid="keys-table">
          <Table.Thead><Table.Tr><Table.Th>{t("name")}</Table.Th><Table.Th>{t("prefix")}</Table.Th><Table.Th>{t("scopes")}</Table.Th>
            <Table.Th visibleFrom="sm">{t("lastUsed")}</Table.Th><Table.Th /></Table.Tr></Table.Thead>
          <Table.Tbody>
            {(keys.data ?? []).map((k) => (
              <Table.Tr key={k.id} data-testid={`key-${k.id}`}>
                <Table.Td>{k.name}</Table.Td><Table.Td><Code>{k.prefix}…</Code></Table.Td>
                <Table.Td>{(k.scopes ?? []).map((s) => <Badge key={s} size="xs" variant="outline" mr={2}>{s}</Badge>)}</Table.Td>
                <Table.Td visibleFrom="sm">{locale.dateTime(k.last_used_at) || "—"}</Table.Td>
                <Table.Td>{k.revoked_at ? <Badge color="gray">{t("revoked")}</Badge>
                  : <Button size="compact-xs" color="red" variant="light" onClick={() => revoke.mutate(k.id!)} data-testid="key-revoke">{t("revoke")}</Button>}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      <Text size="xs" c="dimmed">{t("keysHint")}</Text>
    </Stack>
  );
}

/** Users and roles (an admin changes them, a manager reads their team) and API keys. */
export function Access() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  return (
    <Stack>
      <Title order={2}>{t("usersAndKeys")}</Title>
      <Tabs defaultValue="users" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="users">{t("users")}</Tabs.Tab>
          {can("api-keys:manage") && <Tabs.Tab value="keys" data-testid="tab-keys">{t("apiKeys")}</Tabs.Tab>}
        </Tabs.List>
        <Tabs.Panel value="users" pt="md"><Users /></Tabs.Panel>
        {can("api-keys:manage") && <Tabs.Panel value="keys" pt="md"><ApiKeys /></Tabs.Panel>}
      </Tabs>
    </Stack>
  );
}
