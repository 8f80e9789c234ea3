import { useState } from "react";
import { Anchor, Badge, Button, Card, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useParams } from "react-router-dom";
import { api, ok } from "../api/client";
import { QueryState } from "../components/QueryState";
import { contactName } from "./Contacts";

/** Companies: search as you type, infinite list. */
export function Companies() {
  const { t } = useTranslation();
  const [text, setText] = useState("");
  // results within 300 ms of the last keystroke (bench_console): the API answers in ~20 ms
  const [q] = useDebouncedValue(text.trim(), 100);
  const list = useInfiniteQuery({
    queryKey: ["companies", "list", q],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => ok(await api.GET("/api/v1/companies", { params: { query: { q: q || undefined, limit: 50, cursor: pageParam } } })),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const companies = list.data?.pages.flatMap((p) => p.items ?? []) ?? [];
  return (
    <Stack>
      <Title order={2}>{t("companies")}</Title>
      <TextInput placeholder={t("searchCompanies")} aria-label={t("searchCompanies")} value={text}
                 onChange={(e) => setText(e.currentTarget.value)} data-testid="company-search" />
      <QueryState loading={list.isLoading} error={list.error} retry={() => list.refetch()} />
      {!list.isLoading && !companies.length && <Text c="dimmed">{t("nothingHere")}</Text>}
      {companies.length > 0 && (
        <Table.ScrollContainer minWidth={360}>
          <Table highlightOnHover data-testid="companies-table">
            <Table.Thead><Table.Tr>
              <Table.Th>{t("name")}</Table.Th><Table.Th>{t("domain")}</Table.Th><Table.Th visibleFrom="sm">{t("industry")}</Table.Th>
              <Table.Th visibleFrom="sm">{t("tags")}</Table.Th>
            </Table.Tr></Table.Thead>
            <Table.Tbody>
              {companies.map((c) => (
                <Table.Tr key={c.id}>
                  <Table.Td><Anchor component={Link} to={`/companies/${c.id}`}>{c.name}</Anchor></Table.Td>
                  <Table.Td>{c.domain}</Table.Td>
                  <Table.Td visibleFrom="sm">{c.industry}</Table.Td>
                  <Table.Td visibleFrom="sm">{(c.tags ?? []).map((tag) => <Badge key={tag} variant="outline" mr={4}>{tag}</Badge>)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {list.hasNextPage && <Button variant="default" onClick={() => list.fetchNextPage()} loading={list.isFetchingNextPage}>{t("loadMore")}</Button>}
    </Stack>
  );
}

/** A company with its people (the contacts the caller may see). */
export function CompanyCard() {
  const { t } = useTranslation();
  const { companyId = "" } = useParams();
  const company = useQuery({
    queryKey: ["companies", companyId],
    queryFn: async () => ok(await api.GET("/api/v1/companies/{company_id}", { params: { path: { company_id: companyId } } })),
  });
  const people = useQuery({
    queryKey: ["contacts", "company", companyId],
    queryFn: async () => ok(await api.GET("/api/v1/contacts", { params: { query: { company_id: companyId, limit: 100 } } })).items ?? [],
  });
  const c = company.data;
  return (
    <Stack>
      <Group><Button component={Link} to="/companies" variant="subtle" size="xs">← {t("back")}</Button></Group>
      <QueryState loading={company.isLoading} error={company.error} retry={() => company.refetch()} />
      {c && (
        <Card withBorder data-testid="company-card">
          <Title order={2}>{c.name}</Title>
          <Text c="dimmed">{[c.domain, c.industry].filter(Boolean).join(" · ")}</Text>
          <Title order={4} mt="md">{t("people")}</Title>
          {(people.data ?? []).map((p) => (
            <Anchor key={p.id} component={Link} to={`/contacts/${p.id}`} display="block">{contactName(p)}</Anchor>
          ))}
          {people.data?.length === 0 && <Text c="dimmed">{t("nothingHere")}</Text>}
        </Card>
      )}
    </Stack>
  );
}
