import { useState } from "react";
import { Alert, Button, Center, Paper, PasswordInput, Stack, TextInput, Title } from "@mantine/core";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router-dom";
import { useSession } from "../auth";

export function Login() {
  const { t } = useTranslation();
  const { signIn } = useSession();
  const navigate = useNavigate();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(email, password);
      navigate("/today");
    } catch {
      setError(t("signInFailed"));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Center mih="100vh" p="md">
      <Paper withBorder shadow="sm" p="xl" w={360} component="form" onSubmit={submit}>
        <Stack>
          <Title order={2}>{t("appName")}</Title>
          {error && <Alert color="red" data-testid="login-error">{error}</Alert>}
          <TextInput label={t("email")} type="email" required autoFocus value={email}
                     onChange={(e) => setEmail(e.currentTarget.value)} name="email" />
          <PasswordInput label={t("password")} required value={password}
                         onChange={(e) => setPassword(e.currentTarget.value)} name="password" />
          <Button type="submit" loading={busy}>{t("signIn")}</Button>
        </Stack>
      </Paper>
    </Center>
  );
}
