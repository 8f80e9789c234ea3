import { useState } from "react";
import { Alert, Badge, Button, Card, Checkbox, Group, Modal, SegmentedControl, Select, Stack, Table, TagsInput, Text,
         TextInput, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Schemas } from "../api/client";
import { useCustomFields, type CustomField, type Entity } from "../components/CustomFields";
import { QueryState } from "../components/QueryState";
import { fieldErrors } from "../components/TaskDialogs";
import { usePermissions } from "../lib/me";

const ENTITIES: Entity[] = ["contact", "company", "deal", "task"];
type FieldType = Schemas["CustomFieldIn"]["type"];
const TYPES: FieldType[] = ["text", "long_text", "number", "money", "date", "datetime", "boolean", "select", "multi_select",
                            "user", "url", "email", "phone"];
const WITH_OPTIONS = new Set<string>(["select", "multi_select"]);

/** A label as a stable key: "Shoe size" -> "shoe_size" (what the API accepts: ^[a-z][a-z0-9_]{0,39}$). */
export function keyOf(label: string): string {
  const key = label.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, "_").replace(/^[^a-z]+/, "").replace(/_+$/, "").slice(0, 40);
  return key;
}

function NewField({ entity }: { entity: Entity }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [label, setLabel] = useState("");
  const [key, setKey] = useState<string | null>(null);  // null: follows the label
  const [type, setType] = useState<FieldType>("text");
  const [options, setOptions] = useState<string[]>([]);
  const [required, setRequired] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/custom-fields", { body: {
      entity, label: label.trim(), key: key ?? keyOf(label), type, required,
      ...(WITH_OPTIONS.has(type) ? { options } : {}) } })),
    onSuccess: () => {
      setLabel(""); setKey(null); setOptions([]); setRequired(false); setErrors({});
      queryClient.invalidateQueries({ queryKey: ["custom-fields", entity] });
      toasts.show({ color: "green", message: t("saved") });
    },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  return (
    <Card withBorder>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); create.mutate(); }} data-testid="cf-new">
        <Stack gap="xs">
          <Title order={5}>{t("cfNew")}</Title>
          <Group grow align="flex-start" wrap="wrap">
            <TextInput label={t("cfLabel")} required value={label} error={errors.label} miw={180}
                       onChange={(e) => setLabel(e.currentTarget.value)} data-testid="cf-label" />
            <TextInput label={t("cfKey")} description={t("cfKeyHint")} value={key ?? keyOf(label)} error={errors.key} miw={180}
                       onChange={(e) => setKey(e.currentTarget.value)} data-testid="cf-key" />
            <Select label={t("cfType")} value={type} allowDeselect={false} miw={160} error={errors.type}
                    data={TYPES.map((v) => ({ value: v, label: t(`cfType_${v}`) }))} onChange={(v) => v && setType(v as FieldType)}
                    data-testid="cf-type" />
          </Group>
          {WITH_OPTIONS.has(type) && (
            <TagsInput label={t("cfOptions")} description={t("cfOptionsHint")} value={options} onChange={setOptions}
                       error={errors.options} data-testid="cf-options" />
          )}
          <Checkbox label={t("cfRequired")} description={t("cfRequiredHint")} checked={required}
                    onChange={(e) => setRequired(e.currentTarget.checked)} />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button type="submit" loading={create.isPending} disabled={!label.trim()} data-testid="cf-create">{t("cfCreate")}</Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}

function EditField({ field, onClose }: { field: CustomField; onClose: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [label, setLabel] = useState(field.label ?? "");
  const [options, setOptions] = useState<string[]>(field.options ?? []);
  const [required, setRequired] = useState(!!field.required);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const save = useMutation({
    mutationFn: async () => ok(await api.PATCH("/api/v1/custom-fields/{field_id}", { params: { path: { field_id: field.id! } },
      body: { label: label.trim(), required, ...(WITH_OPTIONS.has(field.type ?? "") ? { options } : {}) } })),
    onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["custom-fields", field.entity] }); onClose(); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  return (
    <Modal opened onClose={onClose} title={`${t("edit")}: ${field.label}`}>
      <form onSubmit={(e) => { e.preventDefault(); setErrors({}); save.mutate(); }}>
        <Stack gap="xs">
          <TextInput label={t("cfLabel")} data-autofocus required value={label} error={errors.label}
                     onChange={(e) => setLabel(e.currentTarget.value)} data-testid="cf-edit-label" />
          <Text size="xs" c="dimmed">{t("cfKey")}: <code>{field.key}</code> · {t(`cfType_${field.type}`)}</Text>
          {WITH_OPTIONS.has(field.type ?? "") && (
            <TagsInput label={t("cfOptions")} description={t("cfOptionsHint")} value={options} onChange={setOptions} error={errors.options} />
          )}
          <Checkbox label={t("cfRequired")} checked={required} onChange={(e) => setRequired(e.currentTarget.checked)} />
          {errors._ && <Alert color="red">{errors._}</Alert>}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>{t("cancel")}</Button>
            <Button type="submit" loading={save.isPending} data-testid="cf-edit-save">{t("save")}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** Settings → Custom fields: define typed fields per entity, rename them, change their
 * options, retire them (stored values are kept and shown) or bring them back. */
export function CustomFieldSettings() {
  const { t } = useTranslation();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const [entity, setEntity] = useState<Entity>("contact");
  const [editing, setEditing] = useState<CustomField | null>(null);
  const fields = useCustomFields(entity);
  const writable = can("custom-fields:manage");
  const retire = useMutation({
    mutationFn: async ({ field, retired }: { field: CustomField; retired: boolean }) =>
      ok(await api.PATCH("/api/v1/custom-fields/{field_id}", { params: { path: { field_id: field.id! } }, body: { retired } })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["custom-fields", entity] }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
  });
  return (
    <Stack maw={960}>
      <Title order={2}>{t("customFields")}</Title>
      <SegmentedControl value={entity} onChange={(v) => setEntity(v as Entity)} data-testid="cf-entity" fullWidth
                        data={ENTITIES.map((e) => ({ value: e, label: t(`entity_${e}`) }))} />
      {writable && <NewField key={entity} entity={entity} />}
      <QueryState loading={fields.isLoading} error={fields.error} retry={() => fields.refetch()} />
      {fields.data && !fields.data.length && <Text c="dimmed">{t("cfNone")}</Text>}
      {!!fields.data?.length && (
        <Table.ScrollContainer minWidth={320}>
          <Table data-testid="cf-table">
            <Table.Thead><Table.Tr><Table.Th>{t("cfLabel")}</Table.Th><Table.Th visibleFrom="sm">{t("cfKey")}</Table.Th>
              <Table.Th>{t("cfType")}</Table.Th><Table.Th visibleFrom="sm">{t("cfOptions")}</Table.Th><Table.Th /></Table.Tr></Table.Thead>
            <Table.Tbody>
              {fields.data.map((f) => (
                <Table.Tr key={f.id} data-testid={`cf-${f.key}`} style={f.retired ? { opacity: 0.6 } : undefined}>
                  <Table.Td>{f.label} {f.required && <Badge size="xs" variant="light">{t("cfRequiredShort")}</Badge>}
                    {f.retired && <Badge size="xs" color="gray" ml={4}>{t("retired")}</Badge>}</Table.Td>
                  <Table.Td visibleFrom="sm"><code>{f.key}</code></Table.Td>
                  <Table.Td>{t(`cfType_${f.type}`)}</Table.Td>
                  <Table.Td visibleFrom="sm">{(f.options ?? []).map((o) => <Badge key={o} size="xs" variant="outline" mr={2}>{o}</Badge>)}</Table.Td>
                  <Table.Td>
                    {writable && (
                      <Group gap={4} wrap="nowrap" justify="flex-end">
                        {!f.retired && <Button size="compact-xs" variant="light" onClick={() => setEditing(f)} data-testid="cf-edit">{t("edit")}</Button>}
                        <Button size="compact-xs" variant="subtle" color={f.retired ? "blue" : "red"} data-testid={f.retired ? "cf-restore" : "cf-retire"}
                                onClick={() => retire.mutate({ field: f, retired: !f.retired })}>{f.retired ? t("cfRestore") : t("cfRetire")}</Button>
                      </Group>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Text size="xs" c="dimmed">{t("cfRetireHint")}</Text>
      {editing && <EditField key={editing.id} field={editing} onClose={() => setEditing(null)} />}
    </Stack>
  );
}
