// The API clients: gRPC-web through Envoy (same origin), generated from protos/.
// Every call carries the signed-in user id as x-user-id. Connectivity is tracked
// here: a call that cannot reach the gateway raises the banner, and a health poll
// lowers it again (views listen for "reconnected" to reload).
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { JobService } from "./gen/slidelane/v1/job_service_pb";
import { MetricsService } from "./gen/slidelane/v1/metrics_service_pb";
import { ProgressService } from "./gen/slidelane/v1/progress_service_pb";
import { SystemService } from "./gen/slidelane/v1/system_service_pb";
import { VisualizationService } from "./gen/slidelane/v1/visualization_service_pb";
import { WorkflowService } from "./gen/slidelane/v1/workflow_service_pb";

const USER_KEY = "slidelane.user";
const USER_RE = /^[A-Za-z0-9_-]{1,64}$/;

export const session = {
  get user(): string | null {
    return window.localStorage.getItem(USER_KEY);
  },
  signIn(user: string): void {
    window.localStorage.setItem(USER_KEY, user);
  },
  signOut(): void {
    window.localStorage.removeItem(USER_KEY);
  },
  /** Why a user id is refused, or null when it is fine (the server's own rule). */
  check(user: string): string | null {
    if (!user) return "Enter a user id.";
    if (!USER_RE.test(user)) return "Use 1–64 letters, digits, '-' or '_' (no spaces or dots).";
    return null;
  },
};

export function apiBase(): string {
  const configured = import.meta.env.VITE_API_BASE as string | undefined;
  if (configured) return configured;
  return typeof window === "undefined" ? "http://localhost" : window.location.origin;
}

// ------------------------------------------------------------------ connectivity

type Listener = (state: Connectivity) => void;
export interface Connectivity {
  online: boolean;
  detail: string;
}

class ConnectivityTracker {
  state: Connectivity = { online: true, detail: "" };
  private listeners = new Set<Listener>();
  private reconnectListeners = new Set<() => void>();
  private timer: number | undefined;

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  /** Begin the background health poll (every 5 s while online, 3 s while offline). */
  start(): void {
    if (typeof window !== "undefined") this.schedulePoll(5000);
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  down(detail: string): void {
    const was = this.state.online;
    this.state = { online: false, detail };
    this.listeners.forEach((l) => l(this.state));
    if (was) this.schedulePoll(1000);
  }

  up(): void {
    if (this.state.online) return;
    this.state = { online: true, detail: "" };
    window.clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.forEach((l) => l(this.state));
    this.reconnectListeners.forEach((l) => l());
  }

  private schedulePoll(delay: number): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.poll(), delay);
  }

  private async poll(): Promise<void> {
    try {
      const health = await rawSystem.getHealth({}, { timeoutMs: 4000 });
      if (health.status === "SERVING") {
        this.up();
        // Keep polling while online too: a page with no call in flight (a finished
        // workflow, say) must still notice that the gateway went away.
        this.schedulePoll(5000);
        return;
      }
      const broken = health.components.filter((c) => c.essential && !c.healthy).map((c) => c.name);
      this.down(`Slidelane is up but not serving: ${broken.join(", ") || "a component"} unhealthy.`);
    } catch (error) {
      this.down(describeUnreachable(error));
    }
    this.schedulePoll(3000);
  }
}

export const connectivity = new ConnectivityTracker();
connectivity.start();

/** True when the error means "the gateway (or a service behind it) cannot be reached". */
export function isUnreachable(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return error instanceof TypeError;
  if (error.code === Code.Unavailable) return true;
  if (error.code === Code.Unknown || error.code === Code.Internal) {
    return error.cause instanceof TypeError || /fetch|network|HTTP 50[234]|upstream/i.test(error.rawMessage);
  }
  return false;
}

function describeUnreachable(error: unknown): string {
  const message = error instanceof ConnectError ? error.rawMessage : String(error);
  return `Cannot reach the Slidelane gateway (${message}).`;
}

/** Report a failed call from anywhere (streams report their own errors here). */
export function reportError(error: unknown): void {
  if (isUnreachable(error)) connectivity.down(describeUnreachable(error));
}

const identity: Interceptor = (next) => async (req) => {
  const user = session.user;
  if (user) req.header.set("x-user-id", user);
  return next(req);
};

const watchConnectivity: Interceptor = (next) => async (req) => {
  try {
    const res = await next(req);
    if (!res.stream) connectivity.up();
    return res;
  } catch (error) {
    if (!(error instanceof ConnectError && error.code === Code.Canceled)) reportError(error);
    throw error;
  }
};

// Unary calls get a deadline (a hung backend must not leave a spinner forever);
// server streams stay open as long as the server keeps them.
const UNARY_TIMEOUT_MS = 20_000;
const interceptors = [identity, watchConnectivity];
const unaryTransport = createGrpcWebTransport({ baseUrl: apiBase(), interceptors, defaultTimeoutMs: UNARY_TIMEOUT_MS });
const streamTransport = createGrpcWebTransport({ baseUrl: apiBase(), interceptors });
const transport: Transport = {
  unary: (...args) => unaryTransport.unary(...args),
  stream: (...args) => streamTransport.stream(...args),
};
const healthTransport = createGrpcWebTransport({ baseUrl: apiBase() });

export const workflows: Client<typeof WorkflowService> = createClient(WorkflowService, transport);
export const jobs: Client<typeof JobService> = createClient(JobService, transport);
export const progress: Client<typeof ProgressService> = createClient(ProgressService, transport);
export const visualization: Client<typeof VisualizationService> = createClient(VisualizationService, transport);
export const metrics: Client<typeof MetricsService> = createClient(MetricsService, transport);
export const system: Client<typeof SystemService> = createClient(SystemService, transport);
const rawSystem: Client<typeof SystemService> = createClient(SystemService, healthTransport);

// ------------------------------------------------------------------ errors

export interface ApiProblem {
  code: string;
  message: string;
  /** field path (e.g. "jobs[2].depends_on") -> description, from google.rpc.BadRequest. */
  fields: Map<string, string>;
  unreachable: boolean;
}

export function problem(error: unknown): ApiProblem {
  if (error instanceof ConnectError) {
    const fields = new Map<string, string>();
    for (const detail of error.findDetails(BadRequestSchema)) {
      for (const violation of detail.fieldViolations) fields.set(violation.field, violation.description);
    }
    return { code: Code[error.code] ?? String(error.code), message: error.rawMessage, fields, unreachable: isUnreachable(error) };
  }
  return { code: "Unknown", message: error instanceof Error ? error.message : String(error), fields: new Map(), unreachable: false };
}

export function isAbort(error: unknown): boolean {
  return (
    (error instanceof ConnectError && error.code === Code.Canceled) ||
    (error instanceof DOMException && error.name === "AbortError")
  );
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.NotFound;
}

// ------------------------------------------------------------------ UI config

export interface UiConfig {
  slide_roots: string[];
}

let configPromise: Promise<UiConfig> | undefined;
/** Hints the API does not carry (the configured slide roots), from the gateway. */
export function uiConfig(): Promise<UiConfig> {
  configPromise ??= fetch(new URL("/ui-config.json", apiBase()))
    .then((r) => (r.ok ? (r.json() as Promise<UiConfig>) : { slide_roots: [] }))
    .catch(() => {
      configPromise = undefined;
      return { slide_roots: [] };
    });
  return configPromise;
}
