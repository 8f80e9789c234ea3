import { Anchor, Badge, Button, Card, Grid, Group, Stack, Text, Timeline, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useParams } from "react-router-dom";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { contactName } from "./Contacts";

export function ContactCard() {
  const { t, i18n } = useTranslation();
  const { contactId = "" } = useParams();
  const contact = useQuery({
    queryKey: ["contact", contactId],
    queryFn: async () => ok(await api.GET("/api/v1/contacts/{contact_id}", { params: { path: { contact_id: contactId } } })),
  });
  const timeline = useQuery({
    queryKey: ["contact", contactId, "timeline"],
    queryFn: async () => ok(await api.GET("/api/v1/contacts/{contact_id}/timeline", {
      params: { path: { contact_id: contactId }, query: { limit: 50 } } })).items ?? [],
  });
  const c = contact.data;
  const when = (iso?: string) => iso ? new Date(iso).toLocaleString(i18n.language) : "";
  return (
    <Stack>
      <Group><Button component={Link} to="/contacts" variant="subtle" size="xs">← {t("back")}</Button></Group>
      <QueryState loading={contact.isLoading} error={contact.error} retry={() => contact.refetch()} />
      {c && (
        <Grid>
          <Grid.Col span={{ base: 12, md: 5 }}>
            <Card withBorder data-testid="contact-card">
              <Title order={2}>{contactName(c)}</Title>
              {c.do_not_contact && <Badge color="red" mt="xs">{t("doNotContact")}</Badge>}
              <Stack gap="xs" mt="md">
                {c.position && <Text><b>{t("position")}:</b> {c.position}</Text>}
                {c.company_name && <Text><b>{t("company")}:</b> {c.company_name}</Text>}
                {(c.phones ?? []).map((p) => (
                  <Text key={p.e164 ?? p.raw}><b>{t("phone")}:</b>{" "}
                    {c.do_not_contact ? (p.e164 ?? p.raw) : <Anchor href={`tel:${p.e164 ?? ""}`}>{p.e164 ?? p.raw}</Anchor>}
                  </Text>
                ))}
                {(c.emails ?? []).map((e) => (
                  <Text key={e.email}><b>{t("email")}:</b> <Anchor href={`mailto:${e.email}`}>{e.email}</Anchor></Text>
                ))}
                <Text><b>{t("status")}:</b> {c.status}</Text>
                {c.source && <Text><b>{t("source")}:</b> {c.source}</Text>}
                {!!c.tags?.length && <Group gap={4}>{c.tags.map((tag) => <Badge key={tag} variant="outline">{tag}</Badge>)}</Group>}
              </Stack>
            </Card>
          </Grid.Col>
          <Grid.Col span={{ base: 12, md: 7 }}>
            <Card withBorder>
              <Title order={3} mb="md">{t("timeline")}</Title>
              <QueryState loading={timeline.isLoading} error={timeline.error} retry={() => timeline.refetch()} />
              {timeline.data && !timeline.data.length && <Text c="dimmed">{t("noTimeline")}</Text>}
              <Timeline bulletSize={14} lineWidth={2} data-testid="timeline">
                {(timeline.data ?? []).map((entry) => (
                  <Timeline.Item key={entry.id} title={entry.summary ?? entry.kind}>
                    <Text size="xs" c="dimmed">{entry.kind} · {when(entry.occurred_at)}</Text>
                  </Timeline.Item>
                ))}
              </Timeline>
            </Card>
          </Grid.Col>
        </Grid>
      )}
    </Stack>
  );
}
