import { useEffect, useState } from "react";
import { Alert, Badge, Button, Card, FileInput, Group, Progress, Select, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ApiError, ok, tokenStore, type Schemas } from "../api/client";
import { fieldErrors } from "../components/TaskDialogs";
import { guessDelimiter, previewRows } from "../lib/csv";
import { useStream } from "../stream";

type Job = Schemas["ImportJob"];
const TARGETS = ["ignore", "first_name", "last_name", "full_name", "email", "phone", "company", "position", "tags",
                 "owner_email", "source", "status", "birthday", "do_not_contact", "custom"];
const FINISHED = ["done", "failed", "undone"];

async function startImport(file: File, options: { mapping?: Record<string, string>; on_duplicate: string; dry_run: boolean }) {
  const form = new FormData();
  form.append("file", file);
  form.append("on_duplicate", options.on_duplicate);
  form.append("dry_run", String(options.dry_run));
  if (options.mapping) form.append("mapping", JSON.stringify(options.mapping));
  const response = await fetch("/api/v1/imports", { method: "POST", body: form, headers: { Authorization: `Bearer ${tokenStore.get()}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body?.error?.code ?? "http_error", body?.error?.message ?? response.statusText, body?.error?.details ?? {});
  return body as Job;
}

function useJob(id: string | null) {
  return useQuery({
    queryKey: ["imports", id],
    enabled: !!id,
    queryFn: async () => ok(await api.GET("/api/v1/imports/{import_id}", { params: { path: { import_id: id! } } })),
    // the stream says when it moved (import_progress / import_finished); polling is the fallback
    refetchInterval: (query) => FINISHED.includes(query.state.data?.status ?? "") ? false : 2000,
  });
}

function Counts({ job }: { job: Job }) {
  const { t } = useTranslation();
  const c = job.counts ?? {};
  return (
    <Group gap="xs" data-testid={`counts-${job.dry_run ? "dry" : "run"}`}>
      <Badge variant="light">{t("rows")}: {c.rows ?? 0}</Badge>
      <Badge color="green" variant="light">{t("created")}: {c.created ?? 0}</Badge>
      <Badge color="blue" variant="light">{t("updated")}: {c.updated ?? 0}</Badge>
      <Badge color="gray" variant="light">{t("skipped")}: {c.skipped ?? 0}</Badge>
      <Badge color="red" variant="light">{t("failed")}: {c.failed ?? 0}</Badge>
    </Group>
  );
}

/** Upload, preview with the detected encoding / delimiter / mapping (editable), duplicate
 * policy, dry run and its report, the run with live progress, errors as CSV, undo. */
export function Import() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [file, setFile] = useState<File | null>(null);
  const [preview, setPreview] = useState<string[][]>([]);
  const [mapping, setMapping] = useState<Record<string, string>>({});
  const [policy, setPolicy] = useState("skip");
  const [dryId, setDryId] = useState<string | null>(null);
  const [runId, setRunId] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const dry = useJob(dryId);
  const run = useJob(runId);
  useStream((event) => {
    if (event.name.startsWith("import_")) queryClient.invalidateQueries({ queryKey: ["imports"] });
  });
  useEffect(() => {
    setPreview([]); setMapping({}); setDryId(null); setRunId(null); setError(null);
    if (!file || !/\.(csv|txt)$/i.test(file.name)) return;
    file.slice(0, 64 * 1024).text().then((text) => setPreview(previewRows(text, guessDelimiter(text))));
  }, [file]);
  // the server's detected mapping, once, as the starting point to edit
  useEffect(() => {
    if (dry.data?.mapping && !Object.keys(mapping).length) {
      setMapping(Object.fromEntries(dry.data.mapping.map((m) => [String(m.column), String(m.target ?? "ignore")])));
    }
  }, [dry.data?.mapping]); // eslint-disable-line react-hooks/exhaustive-deps

  const start = async (dryRun: boolean) => {
    if (!file) return;
    setBusy(true); setError(null);
    try {
      const job = await startImport(file, { mapping: Object.keys(mapping).length ? mapping : undefined, on_duplicate: policy, dry_run: dryRun });
      if (dryRun) setDryId(job.id ?? null); else setRunId(job.id ?? null);
    } catch (e) {
      const errors = fieldErrors(e);
      setError(Object.entries(errors).map(([k, v]) => k === "_" ? v : `${k}: ${v}`).join(" "));
    } finally {
      setBusy(false);
    }
  };
  const downloadErrors = async (job: Job) => {
    const response = await fetch(`/api/v1/imports/${job.id}/errors.csv`, { headers: { Authorization: `Bearer ${tokenStore.get()}` } });
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement("a");
    a.href = url; a.download = `import-${job.id}-errors.csv`; a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  const undo = async (job: Job) => {
    try {
      ok(await api.POST("/api/v1/imports/{import_id}/undo", { params: { path: { import_id: job.id! } } }));
      queryClient.invalidateQueries({ queryKey: ["imports"] });
    } catch (e) {
      toasts.show({ color: "red", title: t("actionFailed"), message: (e as Error).message });
    }
  };
  const job = run.data;
  const percent = job?.counts?.rows ? Math.round(100 * (job.rows_done ?? 0) / job.counts.rows) : job && FINISHED.includes(job.status ?? "") ? 100 : 0;
  const columns = dry.data?.columns ?? preview[0] ?? [];

  return (
    <Stack>
      <Title order={2}>{t("importContacts")}</Title>
      <Card withBorder>
        <Stack>
          <FileInput label={t("file")} description={t("importFileHint")} accept=".csv,.txt,.xlsx" value={file} onChange={setFile}
                     clearable data-testid="import-file" />
          {preview.length > 0 && (
            <Table.ScrollContainer minWidth={300}>
              <Table withTableBorder data-testid="import-preview">
                <Table.Thead><Table.Tr>{preview[0].map((h, i) => <Table.Th key={i}>{h}</Table.Th>)}</Table.Tr></Table.Thead>
                <Table.Tbody>{preview.slice(1).map((row, r) => (
                  <Table.Tr key={r}>{row.map((cell, i) => <Table.Td key={i}>{cell}</Table.Td>)}</Table.Tr>))}</Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
          <Group align="flex-end">
            <Select label={t("duplicates")} value={policy} allowDeselect={false} onChange={(v) => v && setPolicy(v)} w={220}
                    data={["skip", "update", "create"].map((p) => ({ value: p, label: t(`dup_${p}`) }))} />
            <Button variant="light" onClick={() => start(true)} disabled={!file} loading={busy && !runId} data-testid="import-dry-run">{t("dryRun")}</Button>
          </Group>
          {error && <Alert color="red">{error}</Alert>}
        </Stack>
      </Card>
      {dry.data && (
        <Card withBorder data-testid="import-dry-report">
          <Stack>
            <Group justify="space-between">
              <Title order={4}>{t("dryRunReport")}</Title>
              <Text size="sm" c="dimmed">{t("detected")}: {dry.data.format} · {dry.data.encoding ?? "—"} · {t("delimiter")} “{dry.data.delimiter ?? "—"}”</Text>
            </Group>
            {!FINISHED.includes(dry.data.status ?? "") ? <Progress value={100} animated /> : <Counts job={dry.data} />}
            <SimpleGrid cols={{ base: 1, sm: 2, md: 3 }} spacing="xs">
              {columns.map((column) => (
                <Select key={column} label={column} size="xs" value={mapping[column] ?? "ignore"} allowDeselect={false}
                        data-testid={`map-${column}`} data={TARGETS.map((target) => ({ value: target, label: t(`target_${target}`) }))}
                        onChange={(v) => v && setMapping((m) => ({ ...m, [column]: v }))} />
              ))}
            </SimpleGrid>
            {(dry.data.errors ?? []).slice(0, 5).map((e, i) => (
              <Text key={i} size="xs" c="red">{t("row")} {e.row}: {e.column ?? e.field} — {e.reason}</Text>
            ))}
            <Group>
              <Button variant="default" onClick={() => start(true)} loading={busy && !runId}>{t("dryRunAgain")}</Button>
              <Button onClick={() => start(false)} disabled={!FINISHED.includes(dry.data.status ?? "") || !!runId} data-testid="import-run">{t("runImport")}</Button>
            </Group>
          </Stack>
        </Card>
      )}
      {job && (
        <Card withBorder data-testid="import-run-report">
          <Stack>
            <Group justify="space-between">
              <Title order={4}>{t("importRun")}</Title>
              <Badge data-testid="import-status">{t(`importStatus_${job.status}`)}</Badge>
            </Group>
            <Progress value={percent} animated={!FINISHED.includes(job.status ?? "")} data-testid="import-progress" />
            <Counts job={job} />
            {job.status === "undone" && <Text size="sm">{t("undoneCounts", { deleted: job.deleted ?? 0, restored: job.restored ?? 0, kept: job.kept ?? 0 })}</Text>}
            <Group>
              {!!job.errors_count && <Button variant="light" color="red" onClick={() => downloadErrors(job)} data-testid="import-errors">{t("downloadErrors")}</Button>}
              {job.status === "done" && <Button variant="default" onClick={() => undo(job)} data-testid="import-undo">{t("undo")}</Button>}
            </Group>
          </Stack>
        </Card>
      )}
    </Stack>
  );
}
