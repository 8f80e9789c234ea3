import { useState } from "react";
import { Affix, Button, Group, Paper, Stack, Text, Title } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router-dom";
import { useStream } from "../stream";

type Ringing = { callId: string; from: string; contactId: string | null; summary: string };

/** The screen pop: an inbound call ringing for the user or their contact (call_ringing). */
export function CallPop() {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const [calls, setCalls] = useState<Ringing[]>([]);
  useStream((event) => {
    const data = event.data?.data ?? {};
    const callId = data.call?.id;
    if (!callId) return;
    if (event.name === "call_ringing") {
      setCalls((now) => now.some((c) => c.callId === callId) ? now : [...now, {
        callId, from: data.from ?? "", contactId: data.contact_id ?? null, summary: data.summary ?? "" }]);
    } else if (["call_answered", "call_ended", "call_missed"].includes(event.name)) {
      setCalls((now) => now.filter((c) => c.callId !== callId));
    }
  });
  if (!calls.length) return null;
  return (
    <Affix position={{ bottom: 20, right: 20 }}>
      <Stack>
        {calls.map((call) => (
          <Paper key={call.callId} shadow="lg" p="md" withBorder w={320} data-testid="call-pop">
            <Title order={4}>{t("incomingCall")}</Title>
            <Text fw={600}>{call.from}</Text>
            <Text size="sm" c="dimmed">{call.summary || (call.contactId ? "" : t("unknownCaller"))}</Text>
            <Group mt="sm">
              {call.contactId && (
                <Button size="xs" onClick={() => navigate(`/contacts/${call.contactId}`)}>{t("openContact")}</Button>
              )}
              <Button size="xs" variant="default"
                      onClick={() => setCalls((now) => now.filter((c) => c.callId !== call.callId))}>
                {t("dismiss")}
              </Button>
            </Group>
          </Paper>
        ))}
      </Stack>
    </Affix>
  );
}
