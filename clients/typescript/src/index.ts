/**
 * A typed TypeScript client for the achievements sidecar, on openapi-fetch and the types that
 * openapi-typescript generates from the sidecar's OpenAPI document (`src/schema.ts`).
 *
 *     const sidecar = new AchievementsClient(); // SIDECAR_URL, SIDECAR_TOKEN, SIDECAR_TIMEOUT
 *     const change = await sidecar.apply(message.author.id, { key: "chatterbox" },
 *       [Op.inc("current")], { unlockWhen: [When.gte("current", 100)] });
 *
 * - Every id is a string (`"80351110224678912"`): the client sends `Prefer: ids=string`, so
 *   the sidecar answers ids as strings, and it sends ids as strings. A JavaScript number holds
 *   integers exactly only up to 2^53; Discord snowflakes are above it.
 * - An achievement is `{ id }` or `{ key }` wherever the API takes either (an `Achievement`
 *   itself is an `{ id }`).
 * - Errors are thrown as `SidecarError`s carrying the problem body (`status`, `code`, `title`,
 *   `detail`, `errors`, `index`); branch on `error.code`. A sidecar that cannot be reached
 *   (after the retries) throws `SidecarUnavailable` (status 0, code `UNAVAILABLE`).
 * - Every write sends an `Idempotency-Key` (a new random UUID per call unless one is given) and
 *   is retried after a timeout or a connection error with the same key and the same body: the
 *   sidecar replays its stored answer, so a retry never counts twice. Reads are retried too.
 * - `sidecar.detailed.<method>(...)` answers an `Answer`: the value, the status, `replayed`
 *   (`Idempotent-Replayed: true`: the stored answer of an earlier request with the same key,
 *   nothing applied this time) and the key that was sent.
 *
 * The same names, errors and guarantees as the Python client (`sidecar.client`), in camelCase.
 */

import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

// --- types ----------------------------------------------------------------------------------

type IdField = "id" | "userId" | "achievementId";

/** A schema type with every id as a string, as the sidecar answers under `Prefer: ids=string`. */
export type StringIds<T> = T extends readonly (infer Item)[]
  ? StringIds<Item>[]
  : T extends object
    ? { [K in keyof T]: K extends IdField ? string : StringIds<T[K]> }
    : T;

type Schemas = components["schemas"];

export type JsonObject = { [key: string]: unknown };
export type Achievement = StringIds<Schemas["Achievement"]>;
export type UserAchievement = StringIds<Schemas["UserAchievement"]>;
export type UserAchievementChange = StringIds<Schemas["UserAchievementChange"]>;
export type DeletedUser = StringIds<Schemas["DeletedUser"]>;
export type Event = StringIds<Schemas["Event"]>;
export type AchievementStats = StringIds<Schemas["AchievementStats"]>;
export type LeaderboardEntry = StringIds<Schemas["LeaderboardEntry"]>;
export type Health = Schemas["Health"];
/** What a batch answers per item: a row (upsert, delete) or a change (unlock, apply). */
export type BatchResult = UserAchievement | UserAchievementChange;

/** An achievement by its id or by its key. */
export type AchievementRef = { id: string } | { key: string };

export type Operation =
  | { op: "inc" | "max" | "min"; path: string; value: number }
  | { op: "set"; path: string; value: unknown }
  | { op: "remove"; path: string };

export type Condition = { path: string } & (
  | { gte: number }
  | { gt: number }
  | { lte: number }
  | { lt: number }
  | { eq: unknown }
);

type Row = { userId: string } & ({ achievementId: string } | { achievementKey: string });

export type BatchItem =
  | ({ type: "upsert"; metadata?: JsonObject } & Row)
  | ({ type: "unlock" } & Row)
  | ({ type: "apply"; ops: Operation[]; unlockWhen?: Condition[] } & Row)
  | ({ type: "delete" } & Row);

export interface WriteOptions {
  /** Sent as `Idempotency-Key`; a new random UUID when left out. */
  idempotencyKey?: string;
}

/** A decoded answer with what its response said about it (`client.detailed.<method>`). */
export interface Answer<T> {
  value: T;
  status: number;
  /** The stored answer of an earlier request with the same Idempotency-Key: nothing applied. */
  replayed: boolean;
  /** The key that was sent (writes only). */
  idempotencyKey: string | null;
}

// --- problems -------------------------------------------------------------------------------

/** Every `code` the sidecar answers with (API.md); branch on `SidecarError.code`. */
export const PROBLEM_CODES = [
  "MALFORMED_JSON",
  "UNAUTHORIZED",
  "ACHIEVEMENT_NOT_FOUND",
  "PROGRESS_NOT_FOUND",
  "USER_NOT_FOUND",
  "NOT_FOUND",
  "INVALID_HOST",
  "METHOD_NOT_ALLOWED",
  "HEADERS_TOO_LARGE",
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "VALIDATION_FAILED",
  "KEY_CONFLICT",
  "NOT_A_NUMBER",
  "INVALID_PATH",
  "IDEMPOTENCY_KEY_REUSED",
  "NUMBER_OUT_OF_RANGE",
  "TOO_MANY_STREAMS",
  "TOO_MANY_CONNECTIONS",
  "DATABASE_GONE",
  "DATABASE_BUSY",
  "STORAGE_ERROR",
  "DATABASE_UNAVAILABLE",
  "STORAGE_FULL",
  "INTERNAL_ERROR",
] as const;

/** A code of the sidecar; `HTTP_<status>` for an answer that is no problem body (a proxy's);
 * `UNAVAILABLE` when there was no answer at all. */
export type ProblemCode = (typeof PROBLEM_CODES)[number] | `HTTP_${number}` | "UNAVAILABLE";

export interface FieldError {
  field: string;
  message: string;
}

/** The RFC 9457 problem body of an error answer. */
export interface Problem {
  status: number;
  code: ProblemCode;
  title: string;
  detail?: string;
  errors?: FieldError[];
  /** The failing item of a batch. */
  index?: number;
}

/** Any error answer of the sidecar; `.code` is its machine name, `.problem` its body. */
export class SidecarError extends Error {
  readonly problem: Problem;

  constructor(problem: Problem, options?: { cause?: unknown }) {
    let text = `${problem.status} ${problem.code}: ${problem.detail ?? problem.title}`;
    if (problem.index !== undefined) text += ` (batch item ${problem.index})`;
    super(text, options);
    this.name = "SidecarError";
    this.problem = problem;
  }

  get status(): number {
    return this.problem.status;
  }
  get code(): ProblemCode {
    return this.problem.code;
  }
  get title(): string {
    return this.problem.title;
  }
  get detail(): string | undefined {
    return this.problem.detail;
  }
  get errors(): FieldError[] | undefined {
    return this.problem.errors;
  }
  get index(): number | undefined {
    return this.problem.index;
  }
}

/** No answer at all (connection refused, timeouts) after every retry; `.cause` is the error. */
export class SidecarUnavailable extends SidecarError {
  constructor(cause: unknown, attempts: number) {
    const detail = `${describe(cause)} (after ${attempts} attempt(s))`;
    super(
      { status: 0, code: "UNAVAILABLE", title: "The sidecar could not be reached", detail },
      { cause },
    );
    this.name = "SidecarUnavailable";
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
  return `${error.name}: ${error.message}${cause}`;
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const fields = body as Record<string, unknown>;
  return (
    typeof fields.status === "number" &&
    typeof fields.code === "string" &&
    typeof fields.title === "string"
  );
}

/** The error for an error answer: its problem body, or one made up from the response. */
export function errorFrom(response: Response, body: unknown): SidecarError {
  if (isProblem(body)) return new SidecarError(body);
  const text = typeof body === "string" ? body.trim().slice(0, 500) : "";
  return new SidecarError({
    status: response.status,
    code: `HTTP_${response.status}`,
    title: response.statusText || "error",
    ...(text ? { detail: text } : {}),
  });
}

/** Whether fetch failed to get an answer (a timeout, the network, a bad URL): anything else
 * (a malformed answer, a bug) is thrown as it is. */
function unanswered(error: unknown): boolean {
  return error instanceof TypeError || (error instanceof Error && error.name === "TimeoutError");
}

/** Whether a request that got no answer may be tried again: a timeout, or a network error
 * (undici's `TypeError: fetch failed` carries its cause; a malformed URL's TypeError does not). */
function retryable(error: unknown): boolean {
  return unanswered(error) && (!(error instanceof TypeError) || error.cause !== undefined);
}

// --- building requests ----------------------------------------------------------------------

/** The operations of `apply` (and of batch apply items). */
export const Op = {
  inc: (path: string, value = 1): Operation => ({ op: "inc", path, value }),
  max: (path: string, value: number): Operation => ({ op: "max", path, value }),
  min: (path: string, value: number): Operation => ({ op: "min", path, value }),
  set: (path: string, value: unknown): Operation => ({ op: "set", path, value }),
  remove: (path: string): Operation => ({ op: "remove", path }),
};

/** The conditions of `unlockWhen`: all of them must hold after the ops. */
export const When = {
  gte: (path: string, value: number): Condition => ({ path, gte: value }),
  gt: (path: string, value: number): Condition => ({ path, gt: value }),
  lte: (path: string, value: number): Condition => ({ path, lte: value }),
  lt: (path: string, value: number): Condition => ({ path, lt: value }),
  eq: (path: string, value: unknown): Condition => ({ path, eq: value }),
};

function row(userId: string, achievement: AchievementRef): Row {
  return "id" in achievement
    ? { userId, achievementId: achievement.id }
    : { userId, achievementKey: achievement.key };
}

/** The items of `batch`: each one what its single endpoint takes. */
export const Batch = {
  upsert: (userId: string, achievement: AchievementRef, metadata?: JsonObject): BatchItem => ({
    type: "upsert",
    ...row(userId, achievement),
    ...(metadata === undefined ? {} : { metadata }),
  }),
  unlock: (userId: string, achievement: AchievementRef): BatchItem => ({
    type: "unlock",
    ...row(userId, achievement),
  }),
  apply: (
    userId: string,
    achievement: AchievementRef,
    ops: Operation[],
    unlockWhen?: Condition[],
  ): BatchItem => ({
    type: "apply",
    ...row(userId, achievement),
    ops,
    ...(unlockWhen === undefined ? {} : { unlockWhen }),
  }),
  delete: (userId: string, achievement: AchievementRef): BatchItem => ({
    type: "delete",
    ...row(userId, achievement),
  }),
};

// --- one description of the routes ----------------------------------------------------------

type Api = Client<paths>;

/** What openapi-fetch answers. */
type Fetched<T> =
  | { data: T; error?: never; response: Response }
  | { data?: never; error: unknown; response: Response };

interface Init {
  headers: Record<string, string>;
  signal: AbortSignal;
}

type Send = (init: Init) => Promise<Fetched<unknown>>;

/** One request, built once: a retry sends the same method, URL, key and body. `T` is what its
 * answer holds under `Prefer: ids=string` (the document's type, every id a string). */
interface Call<T> {
  idempotencyKey: string | null;
  send: Send;
  decode?: (data: unknown) => T;
}

function read<T>(send: Send): Call<T> {
  return { idempotencyKey: null, send };
}

function write<T>(options: WriteOptions, send: Send): Call<T> {
  return { idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(), send };
}

const DEFINITIONS = "/users/achievements/definitions";

/** Every route of API.md but the event stream: a method's arguments to its request. The
 * client turns each into a method answering the value, and `detailed` into one answering an
 * `Answer`, so a new route is written once. */
class Routes {
  constructor(protected readonly api: Api) {}

  // definitions

  /** Every definition, by name (case-insensitive), then id. */
  listDefinitions(): Call<Achievement[]> {
    return read((init) => this.api.GET(DEFINITIONS, { ...init }));
  }

  /** One definition by id or by key. */
  getDefinition(achievement: AchievementRef): Call<Achievement> {
    return read((init) =>
      "id" in achievement
        ? this.api.GET(`${DEFINITIONS}/{id}`, { ...init, params: { path: achievement } })
        : this.api.GET(`${DEFINITIONS}/by-key/{key}`, { ...init, params: { path: achievement } }),
    );
  }

  createDefinition(
    definition: { name: string; description?: string; key?: string; metadata?: JsonObject },
    options: WriteOptions = {},
  ): Call<Achievement> {
    return write(options, (init) => this.api.POST(DEFINITIONS, { ...init, body: definition }));
  }

  /** Change the given fields only; `description: null` / `key: null` clear them. */
  updateDefinition(
    id: string,
    changes: {
      name?: string;
      description?: string | null;
      key?: string | null;
      metadata?: JsonObject;
    },
    options: WriteOptions = {},
  ): Call<Achievement> {
    return write(options, (init) =>
      this.api.PUT(`${DEFINITIONS}/{id}`, { ...init, params: { path: { id } }, body: changes }),
    );
  }

  /** Create (201) or replace (200) the definition with this key (declarative sync). */
  putDefinition(
    key: string,
    definition: { name: string; description?: string; metadata?: JsonObject },
    options: WriteOptions = {},
  ): Call<Achievement> {
    return write(options, (init) =>
      this.api.PUT(`${DEFINITIONS}/by-key/{key}`, {
        ...init,
        params: { path: { key } },
        body: definition,
      }),
    );
  }

  /** Delete a definition (by id or key) and every progress row of it. */
  deleteDefinition(achievement: AchievementRef, options: WriteOptions = {}): Call<Achievement> {
    return write(options, (init) =>
      "id" in achievement
        ? this.api.DELETE(`${DEFINITIONS}/{id}`, { ...init, params: { path: achievement } })
        : this.api.DELETE(`${DEFINITIONS}/by-key/{key}`, {
            ...init,
            params: { path: achievement },
          }),
    );
  }

  // progress

  /** Create the row or replace its metadata (none: `{}`). */
  upsertProgress(
    userId: string,
    achievement: AchievementRef,
    metadata?: JsonObject,
    options: WriteOptions = {},
  ): Call<UserAchievement> {
    const body = { ...row(userId, achievement), ...(metadata === undefined ? {} : { metadata }) };
    return write(options, (init) =>
      this.api.POST("/users/achievements/progress", { ...init, body }),
    );
  }

  /** The row, or null when there is none. */
  getProgress(userId: string, achievement: AchievementRef): Call<UserAchievement | null> {
    const query = row(userId, achievement);
    return read((init) =>
      this.api.GET("/users/achievements/progress", { ...init, params: { query } }),
    );
  }

  /** A user's rows: unlocked first (newest first), then locked (latest change first). */
  listProgress(userId: string, options: { unlockedOnly?: boolean } = {}): Call<UserAchievement[]> {
    const query = { userId, unlockedOnly: options.unlockedOnly ?? false };
    return read((init) =>
      this.api.GET("/users/achievements/progress/list", { ...init, params: { query } }),
    );
  }

  /** Unlock (creating the row if needed); `newlyUnlocked` is false if it already was. */
  unlock(
    userId: string,
    achievement: AchievementRef,
    options: WriteOptions = {},
  ): Call<UserAchievementChange> {
    const body = row(userId, achievement);
    return write(options, (init) =>
      this.api.PUT("/users/achievements/progress/unlock", { ...init, body }),
    );
  }

  deleteProgress(
    userId: string,
    achievement: AchievementRef,
    options: WriteOptions = {},
  ): Call<UserAchievement> {
    const query = row(userId, achievement);
    return write(options, (init) =>
      this.api.DELETE("/users/achievements/progress", { ...init, params: { query } }),
    );
  }

  /** Atomic ops on the row's metadata (`Op.inc`, ...), unlocking when `When...` all hold. */
  apply(
    userId: string,
    achievement: AchievementRef,
    ops: Operation[],
    options: WriteOptions & { unlockWhen?: Condition[] } = {},
  ): Call<UserAchievementChange> {
    const { unlockWhen } = options;
    const body = { ...row(userId, achievement), ops, ...(unlockWhen ? { unlockWhen } : {}) };
    return write(options, (init) =>
      this.api.POST("/users/achievements/progress/apply", { ...init, body }),
    );
  }

  /** All items (`Batch.apply(...)`, ...) in one transaction; the results in order. */
  batch(operations: BatchItem[], options: WriteOptions = {}): Call<BatchResult[]> {
    const call = write<BatchResult[]>(options, (init) =>
      this.api.POST("/users/achievements/progress/batch", { ...init, body: { operations } }),
    );
    return { ...call, decode: (data) => (data as { results: BatchResult[] }).results };
  }

  deleteUser(userId: string, options: WriteOptions = {}): Call<DeletedUser> {
    return write(options, (init) =>
      this.api.DELETE("/users/{userId}", { ...init, params: { path: { userId } } }),
    );
  }

  // feed, stats, operations

  /** Unlock events with `id > after`, oldest first. */
  events(options: { after?: string; limit?: number } = {}): Call<Event[]> {
    // An event id counts events: a number holds it exactly (up to 2^53 events).
    const query = { after: Number(options.after ?? "0"), limit: options.limit ?? 100 };
    return read((init) =>
      this.api.GET("/users/achievements/events", { ...init, params: { query } }),
    );
  }

  /** Per achievement: unlocked and in-progress counts and the unlock rate (rarity). */
  stats(): Call<AchievementStats[]> {
    return read((init) => this.api.GET("/users/achievements/stats", { ...init }));
  }

  leaderboard(options: { limit?: number; offset?: number } = {}): Call<LeaderboardEntry[]> {
    const query = { limit: options.limit ?? 10, offset: options.offset ?? 0 };
    return read((init) =>
      this.api.GET("/users/achievements/leaderboard", { ...init, params: { query } }),
    );
  }

  /** One user's rank (a USER_NOT_FOUND problem when it has no unlock). */
  leaderboardEntry(userId: string): Call<LeaderboardEntry> {
    return read((init) =>
      this.api.GET("/users/achievements/leaderboard/{userId}", {
        ...init,
        params: { path: { userId } },
      }),
    );
  }

  health(): Call<Health> {
    return read((init) => this.api.GET("/health", { ...init }));
  }

  /** The Prometheus text. */
  metrics(): Call<string> {
    return read((init) => this.api.GET("/metrics", { ...init, parseAs: "text" }));
  }

  /** The OpenAPI 3.1 document. */
  openapi(): Call<JsonObject> {
    return read((init) => this.api.GET("/schema/openapi.json", { ...init }));
  }
}

type RouteName = Exclude<keyof Routes, "constructor">;

/** The routes as methods answering their value. */
export type Methods = {
  [K in RouteName]: Routes[K] extends (...args: infer A) => Call<infer T>
    ? (...args: A) => Promise<T>
    : never;
};

/** The routes as methods answering an `Answer`. */
export type Detailed = {
  [K in RouteName]: Routes[K] extends (...args: infer A) => Call<infer T>
    ? (...args: A) => Promise<Answer<T>>
    : never;
};

// --- the client -----------------------------------------------------------------------------

export interface ClientOptions {
  /** Default: SIDECAR_URL, else http://127.0.0.1:8787. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer`; default: SIDECAR_TOKEN. */
  token?: string;
  /** Per attempt; default: SIDECAR_TIMEOUT (seconds), else 10 s. */
  timeoutMs?: number;
  /** Tries again after a timeout or a connection error, up to this many times (default 3). */
  retries?: number;
  /** The first pause before trying again, then 2x, 4x... up to 5 s, with jitter (default 200). */
  backoffMs?: number;
  /** The fetch to use (a test's, a proxy's); default: the global fetch. */
  fetch?: typeof globalThis.fetch;
}

export interface StreamOptions {
  /** Start after this event id (default "0": every event). */
  after?: string;
  /** Failed connection attempts in a row before giving up (default: no limit). */
  maxReconnects?: number;
  /** Stops the stream (the iterator then ends). */
  signal?: AbortSignal;
}

const DEFAULT_URL = "http://127.0.0.1:8787";
const MAX_BACKOFF_MS = 5000;
// The stream sends a keep-alive comment every 15 s: a silence this long is a dead connection.
const STREAM_SILENCE_MS = 45_000;

function environment(name: string): string | undefined {
  return globalThis.process?.env[name] || undefined;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The methods of Routes, bound at construction (see the constructor).
export interface AchievementsClient extends Methods {}

/** The client: `const sidecar = new AchievementsClient({ baseUrl, token })`. */
export class AchievementsClient {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
  /** The same methods, answering `Answer`s (whether it was a replay, the status, the key). */
  readonly detailed: Detailed;
  private readonly api: Api;

  constructor(options: ClientOptions = {}) {
    const baseUrl = options.baseUrl ?? environment("SIDECAR_URL") ?? DEFAULT_URL;
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    const seconds = Number(environment("SIDECAR_TIMEOUT") ?? 10);
    this.timeoutMs = options.timeoutMs ?? seconds * 1000;
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 200;
    if (!(this.timeoutMs > 0)) throw new RangeError("the timeout must be a positive number");
    if (!(this.retries >= 0)) throw new RangeError("retries must be 0 or more");
    const token = options.token ?? environment("SIDECAR_TOKEN");
    const headers: Record<string, string> = { Accept: "application/json", Prefer: "ids=string" };
    if (token) headers.Authorization = `Bearer ${token}`;
    this.api = createClient<paths>({
      baseUrl: this.baseUrl,
      headers,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });

    // Each route becomes a method of this client and one of `detailed`.
    const routes = new Routes(this.api);
    const methods: Record<string, unknown> = this as unknown as Record<string, unknown>;
    const detailed: Record<string, unknown> = {};
    for (const name of Object.getOwnPropertyNames(Routes.prototype)) {
      if (name === "constructor") continue;
      const route = routes[name as RouteName] as (...args: unknown[]) => Call<unknown>;
      const build = route.bind(routes);
      detailed[name] = (...args: unknown[]) => this.send(build(...args));
      methods[name] = async (...args: unknown[]) => (await this.send(build(...args))).value;
    }
    this.detailed = detailed as Detailed;
  }

  private delay(attempt: number): number {
    if (this.backoffMs <= 0) return 0;
    return Math.min(MAX_BACKOFF_MS, this.backoffMs * 2 ** attempt) * (0.5 + Math.random() / 2);
  }

  private async send<T>(call: Call<T>): Promise<Answer<T>> {
    const headers: Record<string, string> = {};
    if (call.idempotencyKey !== null) headers["Idempotency-Key"] = call.idempotencyKey;
    for (let attempt = 0; ; attempt++) {
      let fetched: Fetched<unknown>;
      try {
        fetched = await call.send({ headers, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (error) {
        if (!unanswered(error)) throw error;
        if (!retryable(error) || attempt >= this.retries) {
          throw new SidecarUnavailable(error, attempt + 1);
        }
        await pause(this.delay(attempt));
        continue;
      }
      const { response } = fetched;
      if (fetched.error !== undefined || !response.ok) throw errorFrom(response, fetched.error);
      return {
        value: (call.decode ? call.decode(fetched.data) : fetched.data) as T,
        status: response.status,
        replayed: response.headers.get("Idempotent-Replayed") === "true",
        idempotencyKey: call.idempotencyKey,
      };
    }
  }

  /**
   * Unlock events with `id > after`, live, for as long as it is iterated: reconnects (with
   * Last-Event-ID, so nothing is lost or repeated) when the connection drops or falls silent;
   * `maxReconnects` failed attempts in a row end it with SidecarUnavailable. Leaving the loop
   * (or aborting `signal`) closes the connection.
   */
  async *stream(options: StreamOptions = {}): AsyncGenerator<Event, void, undefined> {
    let lastId = options.after ?? "0";
    let failures = 0;
    let left = false; // the caller left the loop at the last `yield`
    while (!options.signal?.aborted) {
      const connection = new AbortController();
      const stop = () => connection.abort(options.signal?.reason);
      options.signal?.addEventListener("abort", stop);
      let silence: ReturnType<typeof setTimeout> | undefined;
      const heard = () => {
        clearTimeout(silence);
        silence = setTimeout(
          () => connection.abort(new DOMException("the stream fell silent", "TimeoutError")),
          STREAM_SILENCE_MS,
        );
      };
      try {
        heard();
        const fetched = await this.api.GET("/users/achievements/events/stream", {
          headers: { Accept: "text/event-stream", "Last-Event-ID": lastId },
          parseAs: "stream",
          signal: connection.signal,
        });
        if (fetched.error !== undefined || !fetched.response.ok || !fetched.data) {
          throw errorFrom(fetched.response, fetched.error);
        }
        for await (const event of serverSentEvents(fetched.data, heard)) {
          lastId = event.id;
          failures = 0;
          left = true;
          yield event;
          left = false;
        }
      } catch (error) {
        // Closing the body as the caller leaves the loop can throw (an errored stream): stop.
        if (left || options.signal?.aborted) return;
        if (!unanswered(error)) throw error;
        const givenUp = options.maxReconnects !== undefined && failures >= options.maxReconnects;
        if (givenUp || !retryable(error)) throw new SidecarUnavailable(error, failures + 1);
      } finally {
        clearTimeout(silence);
        options.signal?.removeEventListener("abort", stop);
        connection.abort();
      }
      await pause(this.delay(Math.min(failures, 5)));
      failures += 1;
    }
  }
}

/** The events of a Server-Sent Events body (only `data:` matters here: the event's `id` is in
 * its JSON too); `heard` is called on every chunk. */
async function* serverSentEvents(
  body: ReadableStream<Uint8Array>,
  heard: () => void,
): AsyncGenerator<Event> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  for await (const chunk of body) {
    heard();
    buffer += decoder.decode(chunk, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines.map((text) => text.replace(/\r$/, ""))) {
      if (line === "") {
        if (data.length > 0) yield JSON.parse(data.join("\n")) as Event;
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
    }
  }
}
