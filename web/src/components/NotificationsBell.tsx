import { ActionIcon, Badge, Indicator, Menu, Stack, Text, UnstyledButton } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, type Notification } from "../api/client";
import { useStream } from "../stream";

export function NotificationsBell() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const unread = useQuery({
    queryKey: ["notifications", "unread"],
    queryFn: async () => ok(await api.GET("/api/v1/notifications/unread-count", {})).unread ?? 0,
  });
  const list = useQuery({
    queryKey: ["notifications", "list"],
    queryFn: async () => ok(await api.GET("/api/v1/notifications", { params: { query: { limit: 10 } } })).items ?? [],
  });
  const read = useMutation({
    mutationFn: async (id: string) =>
      ok(await api.POST("/api/v1/notifications/{notification_id}/read", { params: { path: { notification_id: id } } })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["notifications"] }),
  });
  // the stream refreshes the count (stream.tsx); urgent ones also show a toast
  useStream((event) => {
    if (event.name !== "notification") return;
    const note = event.data?.data?.notification as Notification | undefined;
    if (note) toasts.show({ title: note.title, message: note.body, color: note.urgent ? "red" : "blue",
                            autoClose: note.urgent ? false : 5000 });
  });
  const count = unread.data ?? 0;
  return (
    <Menu width={340} position="bottom-end">
      <Menu.Target>
        <Indicator label={count} size={18} disabled={!count} color="red" data-testid="bell-count">
          <ActionIcon variant="subtle" size="lg" aria-label={t("notifications")} data-testid="bell">
            <svg aria-hidden width="20" height="20" viewBox="0 0 24 24" fill="none" stroke="currentColor"
                 strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
              <path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9" /><path d="M10.3 21a1.94 1.94 0 0 0 3.4 0" />
            </svg>
          </ActionIcon>
        </Indicator>
      </Menu.Target>
      <Menu.Dropdown>
        <Menu.Label>{t("notifications")}</Menu.Label>
        {(list.data ?? []).length === 0 && <Text p="sm" c="dimmed">{t("noNotifications")}</Text>}
        <Stack gap={0}>
          {(list.data ?? []).map((note) => (
            <UnstyledButton key={note.id} p="xs" onClick={() => note.id && !note.read_at && read.mutate(note.id)}>
              <Text size="sm" fw={note.read_at ? 400 : 700}>{note.title}</Text>
              <Text size="xs" c="dimmed" lineClamp={2}>{note.body}</Text>
              {!note.read_at && <Badge size="xs" variant="light">{t("markRead")}</Badge>}
            </UnstyledButton>
          ))}
        </Stack>
      </Menu.Dropdown>
    </Menu>
  );
}
