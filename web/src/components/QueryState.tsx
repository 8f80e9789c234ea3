import { Alert, Button, Center, Loader } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";

/** Loading, or the API's error with a retry (a 503/504 is never a blank page). */
export function QueryState({ loading, error, retry }: { loading: boolean; error: unknown; retry: () => void }) {
  const { t } = useTranslation();
  if (loading) return <Center p="xl"><Loader /></Center>;
  if (!error) return null;
  const unavailable = error instanceof ApiError && [502, 503, 504].includes(error.status);
  return (
    <Alert color="red" title={unavailable ? t("serviceUnavailable") : (error as Error).message}>
      <Button size="xs" mt="xs" onClick={retry}>{t("retry")}</Button>
    </Alert>
  );
}
