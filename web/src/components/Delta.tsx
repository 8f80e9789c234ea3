import { Badge, Tooltip } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { useLocale } from "../lib/me";
import type { Trend } from "../lib/periods";

/** The change against the previous period: +12% (or +3 when the previous was 0), green
 * when better, red when worse; the previous figure in its hint. */
export function Delta({ value, previous, format }: { value: Trend | null; previous?: string; format?: (diff: number) => string }) {
  const { t } = useTranslation();
  const locale = useLocale();
  if (value == null) return null;
  const text = value.ratio != null
    ? new Intl.NumberFormat(locale.language, { style: "percent", maximumFractionDigits: 0, signDisplay: "exceptZero" }).format(value.ratio)
    : format ? `${value.diff > 0 ? "+" : ""}${format(value.diff)}`
    : new Intl.NumberFormat(locale.language, { maximumFractionDigits: 2, signDisplay: "exceptZero" }).format(value.diff);
  return (
    <Tooltip label={`${t("vsPreviousPeriod")}${previous != null ? ` · ${t("inPreviousPeriod", { value: previous })}` : ""}`} withArrow>
      <Badge size="sm" variant="light" data-testid="delta" data-better={value.better == null ? "same" : value.better ? "yes" : "no"}
             color={value.better == null ? "gray" : value.better ? "green" : "red"} style={{ direction: "ltr" }}>{text}</Badge>
    </Tooltip>
  );
}

