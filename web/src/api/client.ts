// The typed gateway client: paths and bodies come from the OpenAPI document
// (schema.d.ts, `npm run gen:api`), so an API change that breaks the console breaks `tsc`.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Contact = Schemas["ContactOut"];
export type Deal = Schemas["DealOut"];
export type Pipeline = Schemas["PipelineOut"];
export type Stage = Schemas["StageOut"];
export type Notification = Schemas["NotificationOut"];
export type TimelineEntry = Schemas["TimelineEntry"];
export type User = Schemas["UserOut"];

const TOKEN_KEY = "crm.token";
export const tokenStore = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (token: string | null) =>
    token ? localStorage.setItem(TOKEN_KEY, token) : localStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void) {
  onUnauthorized = handler;
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = tokenStore.get();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401 && tokenStore.get()) onUnauthorized();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string,
              public details: Record<string, unknown> = {}) {
    super(message);
  }
}

/** The data of an openapi-fetch answer, or an ApiError with the gateway's error body. */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const body = (result.error as { error?: { code?: string; message?: string; details?: Record<string, unknown> } })?.error;
    throw new ApiError(result.response.status, body?.code ?? "http_error",
                       body?.message ?? result.response.statusText, body?.details ?? {});
  }
  return result.data as T;
}
