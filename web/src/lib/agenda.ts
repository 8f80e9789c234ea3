// The Today screen's sections, from GET /agenda and the missed calls; pure, unit-tested.
import type { Schemas } from "../api/client";

type Task = Schemas["TaskOut"];
type Call = Schemas["CallOut"];
type DealRef = Schemas["DealRef"];

export type Agenda = {
  overdue: Task[];
  today: Task[];
  dealsWithoutNextStep: DealRef[] | null;
  missedCalls: Call[];
  count: number;
};

const byDue = (a: Task, b: Task) => (a.due_at ?? "").localeCompare(b.due_at ?? "");

/** Overdue and today's open tasks by due time (a task moved or completed here drops out
 * at once), one missed call per number (the latest) that nobody called back. */
export function buildAgenda(agenda: Schemas["AgendaOut"] | undefined, calls: Call[] | undefined,
                            hidden: ReadonlySet<string> = new Set()): Agenda {
  const open = (task: Task) => task.status !== "done" && task.status !== "canceled" && !hidden.has(task.id ?? "");
  const overdue = (agenda?.overdue ?? []).filter(open).sort(byDue);
  const today = (agenda?.today ?? []).filter(open).sort(byDue);
  const latest = new Map<string, Call>();
  for (const call of calls ?? []) {
    if (!call.missed || call.called_back) continue;
    const key = call.number ?? call.id ?? "";
    const seen = latest.get(key);
    if (!seen || (call.started_at ?? call.created_at ?? "") > (seen.started_at ?? seen.created_at ?? "")) latest.set(key, call);
  }
  const missedCalls = [...latest.values()].sort((a, b) =>
    (b.started_at ?? b.created_at ?? "").localeCompare(a.started_at ?? a.created_at ?? ""));
  const deals = agenda?.deals_without_next_step ?? null;
  return { overdue, today, dealsWithoutNextStep: deals, missedCalls,
           count: overdue.length + today.length + (deals?.length ?? 0) + missedCalls.length };
}

/** A call task needs its next step before it can be completed. */
export function needsNextStep(task: Task) {
  return task.kind === "call";
}
