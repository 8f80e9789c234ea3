import { useState } from "react";
import { ActionIcon, Button, Group, NumberInput, Select, Stack, Table, Text, Title } from "@mantine/core";
import { notifications as toasts } from "@mantine/notifications";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { api, ok, tokenStore, type Deal } from "../api/client";
import { useLocale, usePermissions } from "../lib/me";
import { fieldErrors } from "./TaskDialogs";

/** A document's PDF (GET /quotes|invoices/{id}/pdf, signed in), saved as a download. */
export async function downloadPdf(kind: "quotes" | "invoices", id: string, name: string) {
  const response = await fetch(`/api/v1/${kind}/${id}/pdf`, { headers: { Authorization: `Bearer ${tokenStore.get()}` } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url; a.download = `${name}.pdf`; a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A deal's line items (products from the price list of its currency), its quotes and
 * invoices with their PDFs. */
export function DealSales({ deal }: { deal: Deal }) {
  const { t } = useTranslation();
  const locale = useLocale();
  const { can } = usePermissions();
  const queryClient = useQueryClient();
  const dealId = deal.id!;
  const [product, setProduct] = useState<string | null>(null);
  const [quantity, setQuantity] = useState<number | string>(1);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const items = useQuery({
    queryKey: ["deal-items", dealId],
    queryFn: async () => ok(await api.GET("/api/v1/deals/{deal_id}/items", { params: { path: { deal_id: dealId } } })),
  });
  const products = useQuery({
    queryKey: ["products"],
    enabled: can("products:read"),
    queryFn: async () => ok(await api.GET("/api/v1/products", { params: { query: { active: true, limit: 200 } } })).items ?? [],
  });
  const quotes = useQuery({
    queryKey: ["quotes", dealId],
    enabled: can("quotes:read"),
    queryFn: async () => ok(await api.GET("/api/v1/quotes", { params: { query: { deal_id: dealId, limit: 50 } } })).items ?? [],
  });
  const invoices = useQuery({
    queryKey: ["invoices", dealId],
    enabled: can("invoices:read"),
    queryFn: async () => ok(await api.GET("/api/v1/invoices", { params: { query: { deal_id: dealId, limit: 50 } } })).items ?? [],
  });
  const changed = () => {
    queryClient.invalidateQueries({ queryKey: ["deal-items", dealId] });
    queryClient.invalidateQueries({ queryKey: ["deals"] });
  };
  const add = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/deals/{deal_id}/items", {
      params: { path: { deal_id: dealId } }, body: { product_id: product!, quantity: String(quantity) } })),
    onSuccess: () => { setProduct(null); setQuantity(1); setErrors({}); changed(); },
    onError: (error) => setErrors(fieldErrors(error)),
  });
  const remove = useMutation({
    mutationFn: async (itemId: string) => ok(await api.DELETE("/api/v1/deals/{deal_id}/items/{item_id}", {
      params: { path: { deal_id: dealId, item_id: itemId } } })),
    onSuccess: changed,
  });
  const quote = useMutation({
    mutationFn: async () => ok(await api.POST("/api/v1/quotes", { body: { deal_id: dealId, language: locale.language.slice(0, 2) as "en" } })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["quotes", dealId] }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
  });
  const invoice = useMutation({
    mutationFn: async (quoteId?: string) => ok(await api.POST("/api/v1/invoices", { body: quoteId ? { quote_id: quoteId } : { deal_id: dealId } })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["invoices", dealId] }),
    onError: (error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }),
  });
  const pdf = (kind: "quotes" | "invoices", id: string, number?: string) =>
    downloadPdf(kind, id, number || id).catch((error) => toasts.show({ color: "red", title: t("actionFailed"), message: (error as Error).message }));
  const writable = can("deals:write");
  const lines = items.data?.items ?? [];
  const currency = items.data?.currency ?? deal.currency;
  return (
    <Stack gap="xs" data-testid="deal-sales">
      <Title order={5}>{t("lineItems")}</Title>
      <Table.ScrollContainer minWidth={320}>
        <Table data-testid="line-items">
          <Table.Tbody>
            {lines.map((line) => (
              <Table.Tr key={line.id}>
                <Table.Td>{line.name}</Table.Td>
                <Table.Td>{line.quantity} × {locale.money(line.unit_price, currency)}</Table.Td>
                <Table.Td ta="end">{locale.money(line.total, currency)}</Table.Td>
                {writable && <Table.Td><ActionIcon size="sm" variant="subtle" color="red" aria-label={t("remove")}
                                                   onClick={() => remove.mutate(line.id!)}>×</ActionIcon></Table.Td>}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {items.data?.totals && lines.length > 0 && (
        <Text size="sm" ta="end" data-testid="line-total">{t("total")}: <b>{locale.money(items.data.totals.total, currency)}</b>
          {items.data.totals.tax ? ` (${t("tax")} ${locale.money(items.data.totals.tax, currency)})` : ""}</Text>
      )}
      {writable && (
        <Group align="flex-end" gap="xs" wrap="nowrap">
          <Select label={t("product")} searchable value={product} onChange={setProduct} flex={1} error={errors.product_id || errors._}
                  data={(products.data ?? []).map((p) => ({ value: p.id!, label: `${p.name} (${p.sku})` }))} data-testid="item-product" />
          <NumberInput label={t("quantity")} value={quantity} onChange={setQuantity} min={0.001} w={90} error={errors.quantity}
                       data-testid="item-quantity" />
          <Button onClick={() => add.mutate()} disabled={!product} loading={add.isPending} data-testid="item-add">{t("add")}</Button>
        </Group>
      )}
      <Group justify="space-between">
        <Title order={5}>{t("quotes")}</Title>
        {can("quotes:write") && <Button size="xs" variant="light" disabled={!lines.length} loading={quote.isPending}
                             onClick={() => quote.mutate()} data-testid="quote-create">{t("createQuote")}</Button>}
      </Group>
      {(quotes.data ?? []).map((q) => (
        <Group key={q.id} justify="space-between" data-testid={`quote-${q.id}`}>
          <Text size="sm">{q.number} · {t(`doc_${q.status}`, { defaultValue: q.status })} · {locale.money(q.totals?.total, q.currency)}</Text>
          <Group gap={4}>
            <Button size="compact-xs" variant="default" onClick={() => pdf("quotes", q.id!, q.number)} data-testid="quote-pdf">PDF</Button>
            {can("invoices:write") && q.status === "accepted" && <Button size="compact-xs" variant="light" onClick={() => invoice.mutate(q.id)}>{t("createInvoice")}</Button>}
          </Group>
        </Group>
      ))}
      {(invoices.data ?? []).length > 0 && <Title order={5}>{t("invoices")}</Title>}
      {(invoices.data ?? []).map((inv) => (
        <Group key={inv.id} justify="space-between">
          <Text size="sm">{inv.number} · {t(`doc_${inv.status}`, { defaultValue: inv.status })} · {locale.money(inv.totals?.total, inv.currency)}</Text>
          <Button size="compact-xs" variant="default" onClick={() => pdf("invoices", inv.id!, inv.number)}>PDF</Button>
        </Group>
      ))}
    </Stack>
  );
}
