import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api, ok, setUnauthorizedHandler, tokenStore, type User } from "./api/client";

type Session = {
  token: string | null;
  user: User | null;
  signIn: (email: string, password: string) => Promise<void>;
  signOut: () => Promise<void>;
};

const SessionContext = createContext<Session | null>(null);
const USER_KEY = "crm.user";

export function SessionProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [token, setToken] = useState<string | null>(tokenStore.get());
  const [user, setUser] = useState<User | null>(() => {
    const raw = localStorage.getItem(USER_KEY);
    return raw ? (JSON.parse(raw) as User) : null;
  });

  const forget = useCallback(() => {
    tokenStore.set(null);
    localStorage.removeItem(USER_KEY);
    setToken(null);
    setUser(null);
    queryClient.clear();
  }, [queryClient]);

  useEffect(() => setUnauthorizedHandler(forget), [forget]);

  // refresh the token a minute before it expires, while the session lasts
  useEffect(() => {
    if (!token) return;
    const timer = window.setInterval(async () => {
      const result = await api.POST("/api/v1/auth/refresh", {});
      if (result.data?.access_token) {
        tokenStore.set(result.data.access_token);
        setToken(result.data.access_token);
      }
    }, 30 * 60 * 1000);
    return () => window.clearInterval(timer);
  }, [token]);

  const signIn = useCallback(async (email: string, password: string) => {
    const data = ok(await api.POST("/api/v1/auth/login", { body: { email, password } }));
    tokenStore.set(data.access_token ?? null);
    localStorage.setItem(USER_KEY, JSON.stringify(data.user ?? null));
    setToken(data.access_token ?? null);
    setUser(data.user ?? null);
  }, []);

  const signOut = useCallback(async () => {
    await api.POST("/api/v1/auth/logout", {}).catch(() => undefined);
    forget();
  }, [forget]);

  const value = useMemo(() => ({ token, user, signIn, signOut }), [token, user, signIn, signOut]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession() {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}
