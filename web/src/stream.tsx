// The live stream (GET /api/v1/stream): a single-use ticket from POST /api/v1/stream/tickets
// opens an EventSource; on error it reconnects with a new ticket and ?last_event_id= so the
// stream replays what was missed (or says `resync`, and every query is refetched).
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "./api/client";
import { useSession } from "./auth";

export type StreamEvent = { id: string | null; name: string; data: any };
type Listener = (event: StreamEvent) => void;

const NAMES = [
  "call_ringing", "notification", "resync",
  "contact_created", "contact_updated", "contact_deleted", "contact_restored", "contact_merged",
  "deal_created", "deal_updated", "deal_assigned", "deal_stage_changed", "deal_won", "deal_lost",
  "deal_deleted", "deal_restored", "task_created", "task_updated", "task_assigned",
  "task_completed", "task_canceled", "call_started", "call_answered", "call_ended", "call_missed",
  "import_progress", "import_finished", "import_undone",
  "company_created", "company_updated", "company_deleted", "company_restored",
];

// which cached queries an event makes stale
export function staleKeys(name: string): string[][] {
  if (name === "resync") return [[]];
  if (name === "notification") return [["notifications"]];
  if (name.startsWith("contact_")) return [["contacts"], ["contact"]];
  if (name.startsWith("company_")) return [["companies"]];
  if (name.startsWith("import_")) return [["imports"], ["contacts"]];
  if (name.startsWith("deal_")) return [["deals"], ["tasks", "agenda"]];
  if (name.startsWith("task_")) return [["contact"], ["tasks"]];
  if (name.startsWith("call_")) return [["contact"], ["calls"]];
  return [];
}

type StreamState = { live: boolean; subscribe: (listener: Listener) => () => void };
const StreamContext = createContext<StreamState>({ live: false, subscribe: () => () => {} });

export function StreamProvider({ children }: { children: ReactNode }) {
  const { token } = useSession();
  const queryClient = useQueryClient();
  const listeners = useRef(new Set<Listener>());
  const [live, setLive] = useState(false);

  useEffect(() => {
    if (!token) return;
    let source: EventSource | null = null;
    let lastId: string | null = null;
    let stopped = false;
    let retry: number | undefined;

    const connect = async () => {
      const ticket = await api.POST("/api/v1/stream/tickets", {}).catch(() => null);
      if (stopped) return;
      if (!ticket?.data?.url) {
        retry = window.setTimeout(connect, 5000);
        return;
      }
      const url = ticket.data.url + (lastId ? `&last_event_id=${encodeURIComponent(lastId)}` : "");
      source = new EventSource(url);
      const handle = (name: string) => (message: MessageEvent) => {
        if (message.lastEventId) lastId = message.lastEventId;
        const event = { id: message.lastEventId || null, name, data: JSON.parse(message.data) };
        for (const key of staleKeys(name)) queryClient.invalidateQueries({ queryKey: key });
        listeners.current.forEach((listener) => listener(event));
      };
      source.addEventListener("hello", () => setLive(true));
      for (const name of NAMES) source.addEventListener(name, handle(name));
      source.onerror = () => {
        // the ticket was used: a reconnect needs a new one
        source?.close();
        setLive(false);
        if (!stopped) retry = window.setTimeout(connect, 1000);
      };
    };
    connect();
    return () => {
      stopped = true;
      window.clearTimeout(retry);
      source?.close();
      setLive(false);
    };
  }, [token, queryClient]);

  const subscribe = (listener: Listener) => {
    listeners.current.add(listener);
    return () => listeners.current.delete(listener);
  };
  return <StreamContext.Provider value={{ live, subscribe }}>{children}</StreamContext.Provider>;
}

export function useStream(listener?: Listener) {
  const state = useContext(StreamContext);
  const saved = useRef(listener);
  saved.current = listener;
  useEffect(() => state.subscribe((event) => saved.current?.(event)), [state]);
  return state.live;
}
