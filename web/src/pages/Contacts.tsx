import { useEffect, useRef, useState } from "react";
import { Anchor, Badge, Center, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useInfiniteQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useSearchParams } from "react-router-dom";
import { api, ok, type Contact } from "../api/client";
import { QueryState } from "../components/QueryState";

const PAGE = 50;

export function contactName(contact: Contact) {
  return [contact.first_name, contact.last_name].filter(Boolean).join(" ") || contact.emails?.[0]?.email || "—";
}

/** Search as you type (the list's `q`), infinite scroll over keyset cursors. */
export function Contacts() {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const [text, setText] = useState(params.get("q") ?? "");
  const [q] = useDebouncedValue(text.trim(), 200);
  useEffect(() => setParams(q ? { q } : {}, { replace: true }), [q, setParams]);

  const list = useInfiniteQuery({
    queryKey: ["contacts", "list", q],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/contacts", {
      params: { query: { q: q || undefined, limit: PAGE, cursor: pageParam } } })),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const sentinel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const node = sentinel.current;
    if (!node) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries[0].isIntersecting && list.hasNextPage && !list.isFetchingNextPage) list.fetchNextPage();
    }, { rootMargin: "400px" });
    observer.observe(node);
    return () => observer.disconnect();
  }, [list]);

  const contacts = list.data?.pages.flatMap((page) => page.items ?? []) ?? [];
  return (
    <Stack>
      <Title order={2}>{t("contacts")}</Title>
      <TextInput placeholder={t("search")} value={text} aria-label={t("search")} data-testid="contact-search"
                 onChange={(e) => setText(e.currentTarget.value)} autoFocus />
      <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
      {!list.isLoading && !contacts.length && !list.error && <Text c="dimmed">{t("noContacts")}</Text>}
      {contacts.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table highlightOnHover data-testid="contacts-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t("name")}</Table.Th><Table.Th>{t("phone")}</Table.Th>
                <Table.Th visibleFrom="sm">{t("email")}</Table.Th><Table.Th visibleFrom="sm">{t("status")}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {contacts.map((contact) => (
                <Table.Tr key={contact.id}>
                  <Table.Td><Anchor component={Link} to={`/contacts/${contact.id}`}>{contactName(contact)}</Anchor></Table.Td>
                  <Table.Td>{contact.phones?.[0] && <Anchor href={`tel:${contact.phones[0].e164 ?? ""}`}>{contact.phones[0].e164 ?? contact.phones[0].raw}</Anchor>}</Table.Td>
                  <Table.Td visibleFrom="sm">{contact.emails?.[0]?.email}</Table.Td>
                  <Table.Td visibleFrom="sm"><Badge variant="light">{contact.status}</Badge></Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <div ref={sentinel} />
      {list.isFetchingNextPage && <Center><Text c="dimmed">{t("loadingMore")}</Text></Center>}
    </Stack>
  );
}
