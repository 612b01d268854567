// The TypeScript client against a real sidecar (SIDECAR_URL; tests/test_typescript_client.py
// starts one): every method, ids as strings that round-trip exactly, errors as typed problems,
// retries that reuse one Idempotency-Key, replays, the SSE stream with resume.

import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import {
  AchievementsClient,
  Batch,
  Op,
  PROBLEM_CODES,
  SidecarError,
  SidecarUnavailable,
  When,
  type Event,
} from "../src/index.js";

type FetchInput = Parameters<typeof globalThis.fetch>[0];

const URL_OF_SIDECAR = process.env.SIDECAR_URL;
if (!URL_OF_SIDECAR) throw new Error("set SIDECAR_URL to a running sidecar");
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const SNOWFLAKE = "80351110224678912"; // above 2^53: a number would turn it into ...910
const LARGEST = "9223372036854775807"; // 2^63 - 1

function client(options: ConstructorParameters<typeof AchievementsClient>[0] = {}) {
  return new AchievementsClient({ baseUrl: URL_OF_SIDECAR, backoffMs: 0, ...options });
}

function unique(prefix = "k"): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

/** A snowflake-sized user id no other test uses. */
function freshUser(): string {
  return (10n ** 17n + (randomBytes(8).readBigUInt64BE() % 10n ** 17n)).toString();
}

async function rejects(promise: Promise<unknown>, code: string): Promise<SidecarError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SidecarError, `not a SidecarError: ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`no ${code}`);
}

interface Seen {
  method: string;
  path: string;
  key: string | null;
  prefer: string | null;
  body: string;
  replayed: string | null;
}

/** A fetch in front of the real one: every request reaches the sidecar, but the first `losses`
 * answers are thrown away with a TimeoutError, as when the write was done and the answer came
 * too late. */
function answerLost(losses: number) {
  const seen: Seen[] = [];
  const state = { losses };
  const fetch = async (input: FetchInput, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const body = await request.clone().text();
    const response = await globalThis.fetch(request);
    const text = await response.text();
    seen.push({
      method: request.method,
      path: new URL(request.url).pathname,
      key: request.headers.get("idempotency-key"),
      prefer: request.headers.get("prefer"),
      body,
      replayed: response.headers.get("idempotent-replayed"),
    });
    if (state.losses > 0) {
      state.losses -= 1;
      throw new DOMException("simulated: the answer was lost", "TimeoutError");
    }
    return new Response(text, response);
  };
  return { fetch, seen, state };
}

describe("every method", () => {
  test("definitions by id and by key", async () => {
    const sidecar = client();
    const key = unique();
    const created = await sidecar.createDefinition({
      name: "Chatterbox",
      description: "Send messages",
      key,
      metadata: { target: 10, icon: "x" },
    });
    assert.equal(typeof created.id, "string");
    assert.deepEqual(
      [created.name, created.description, created.key, created.metadata],
      ["Chatterbox", "Send messages", key, { target: 10, icon: "x" }],
    );
    assert.match(created.createdAt, TIMESTAMP);
    assert.deepEqual(await sidecar.getDefinition({ id: created.id }), created);
    assert.deepEqual(await sidecar.getDefinition({ key }), created);
    assert.ok((await sidecar.listDefinitions()).some((d) => d.id === created.id));

    const renamed = await sidecar.updateDefinition(created.id, { name: "Chatterbox II" });
    assert.deepEqual([renamed.name, renamed.description], ["Chatterbox II", "Send messages"]);
    const cleared = await sidecar.updateDefinition(created.id, { description: null, key: null });
    assert.deepEqual([cleared.description, cleared.key], [null, null]);

    const other = unique();
    const first = await sidecar.detailed.putDefinition(other, { name: "Synced" });
    assert.deepEqual([first.status, first.replayed], [201, false]);
    const again = await sidecar.detailed.putDefinition(other, { name: "Again", description: "d" });
    assert.deepEqual([again.status, again.value.id], [200, first.value.id]);

    assert.deepEqual(await sidecar.deleteDefinition({ key: other }), again.value);
    // An Achievement is a reference to itself.
    assert.equal((await sidecar.deleteDefinition(created)).id, created.id);
    await rejects(sidecar.getDefinition({ id: created.id }), "ACHIEVEMENT_NOT_FOUND");
  });

  test("progress, with Discord ids that a number cannot hold", async () => {
    const sidecar = client();
    const key = unique();
    const messages = await sidecar.putDefinition(key, { name: "Messages" });
    const badge = await sidecar.createDefinition({ name: "Badge" });
    for (const user of [SNOWFLAKE, LARGEST]) {
      await sidecar.deleteUser(user).catch(() => undefined); // a rerun on the same server
      const upserted = await sidecar.upsertProgress(user, { id: messages.id }, { current: 1 });
      assert.deepEqual([upserted.userId, upserted.achievementId], [user, messages.id]);
      const applied = await sidecar.apply(user, { key }, [Op.inc("current"), Op.inc("current")], {
        unlockWhen: [When.gte("current", 3)],
      });
      assert.deepEqual([applied.userId, applied.newlyUnlocked], [user, true]);
      assert.deepEqual(applied.metadata, { current: 3 });
      const got = await sidecar.getProgress(user, { key });
      assert.equal(got?.userId, user);
      assert.equal(await sidecar.getProgress(user, { id: badge.id }), null);

      const unlocked = await sidecar.unlock(user, badge);
      const repeated = await sidecar.unlock(user, badge);
      assert.deepEqual([unlocked.newlyUnlocked, repeated.newlyUnlocked], [true, false]);
      assert.equal(repeated.unlockedAt, unlocked.unlockedAt);

      const listed = await sidecar.listProgress(user, { unlockedOnly: true });
      assert.deepEqual(listed.map((r) => r.userId), [user, user]);
      const entry = await sidecar.leaderboardEntry(user);
      assert.deepEqual([entry.userId, entry.unlockedCount], [user, 2]);
      assert.deepEqual((await sidecar.deleteProgress(user, { key })).userId, user);
      assert.deepEqual(await sidecar.deleteUser(user), { userId: user, deletedProgress: 1 });
      await rejects(sidecar.deleteUser(user), "USER_NOT_FOUND");
    }
  });

  test("batch results in order", async () => {
    const sidecar = client();
    const [user, key] = [freshUser(), unique()];
    const achievement = await sidecar.putDefinition(key, { name: "Batched" });
    const [upsert, apply, unlock, removed] = await sidecar.batch([
      Batch.upsert(user, { key }, { current: 5 }),
      Batch.apply(user, achievement, [Op.inc("current", 5)], [When.gte("current", 10)]),
      Batch.unlock(user, { key }),
      Batch.delete(user, { key }),
    ]);
    assert.deepEqual(upsert?.metadata, { current: 5 });
    assert.equal(upsert && "newlyUnlocked" in upsert, false);
    assert.equal(apply?.userId, user);
    assert.equal(apply && "newlyUnlocked" in apply && apply.newlyUnlocked, true);
    assert.equal(unlock && "newlyUnlocked" in unlock && unlock.newlyUnlocked, false);
    assert.equal(removed?.unlockedAt, apply?.unlockedAt);

    const failed = await rejects(
      sidecar.batch([Batch.upsert(user, { key }), Batch.apply(user, { key }, [Op.set("", 1)])]),
      "INVALID_PATH",
    );
    assert.equal(failed.index, 1);
    assert.equal(await sidecar.getProgress(user, { key }), null); // all or nothing
  });

  test("the feed, stats, leaderboard and operations", async () => {
    const sidecar = client();
    const [user, key] = [freshUser(), unique()];
    const start = await sidecar.events({ after: "0", limit: 1000 });
    const achievement = await sidecar.putDefinition(key, { name: "Fed" });
    await sidecar.unlock(user, { key });
    const events = await sidecar.events({ after: start.at(-1)?.id ?? "0" });
    const mine = events.filter((e) => e.userId === user);
    assert.equal(mine.length, 1);
    assert.deepEqual(
      [mine[0]?.type, mine[0]?.achievementId, typeof mine[0]?.id],
      ["achievement.unlocked", achievement.id, "string"],
    );
    const stats = await sidecar.stats();
    const row = stats.find((s) => s.achievementId === achievement.id);
    assert.deepEqual([row?.unlockedCount, row?.inProgressCount], [1, 0]);
    const board = await sidecar.leaderboard({ limit: 100 });
    assert.ok(board.every((e, i) => e.rank === i + 1 && typeof e.userId === "string"));
    assert.equal((await sidecar.health()).status, "ok");
    assert.match(await sidecar.metrics(), /sidecar_http_requests_total/);
    const document = await sidecar.openapi();
    assert.ok("/users/achievements/progress/apply" in (document.paths as object));
  });
});

describe("the unlock feed as an async iterator", () => {
  test("live, and resumed after a given id", async () => {
    const sidecar = client();
    const [key, users] = [unique(), [freshUser(), freshUser(), freshUser()]];
    await sidecar.putDefinition(key, { name: "Streamed" });
    const first = await sidecar.unlock(users[0]!, { key });
    await sidecar.unlock(users[1]!, { key });
    const before = (await sidecar.events({ after: "0", limit: 1000 })).filter(
      (e) => e.userId === users[0],
    );
    const stop = new AbortController();
    const stream = sidecar.stream({ after: before[0]!.id, signal: stop.signal });
    const next = async (): Promise<Event> => {
      const step = await stream.next();
      assert.ok(!step.done);
      return step.value;
    };
    const replayed = await next();
    assert.equal(replayed.userId, users[1]);
    await sidecar.unlock(users[2]!, { key }); // arrives live
    const live = await next();
    assert.deepEqual([live.userId, live.achievementId], [users[2], first.achievementId]);
    assert.equal(BigInt(live.id), BigInt(replayed.id) + 1n);
    stop.abort();
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
  });

  test("reconnects with Last-Event-ID when the connection drops", async () => {
    const writer = client();
    const key = unique();
    await writer.putDefinition(key, { name: "Dropped" });
    const start = (await writer.events({ after: "0", limit: 1000 })).at(-1)?.id ?? "0";
    for (let n = 0; n < 3; n++) await writer.unlock(freshUser(), { key });

    // Each connection passes the server's bytes on up to the end of its first event (whatever
    // the server's chunks), then breaks.
    const resumedFrom: (string | null)[] = [];
    const dropping = async (input: FetchInput, init?: RequestInit) => {
      const request = new Request(input, init);
      resumedFrom.push(request.headers.get("last-event-id"));
      const response = await globalThis.fetch(request);
      const reader = response.body!.getReader();
      const [decoder, encoder] = [new TextDecoder(), new TextEncoder()];
      let text = "";
      let delivered = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (delivered) {
            await reader.cancel();
            return controller.error(new TypeError("terminated", { cause: new Error("reset") }));
          }
          const { value, done } = await reader.read();
          if (done) return controller.close();
          text += decoder.decode(value, { stream: true });
          const end = text.indexOf("\n\n", text.indexOf("data:"));
          if (text.includes("data:") && end >= 0) {
            delivered = true;
            return controller.enqueue(encoder.encode(text.slice(0, end + 2)));
          }
        },
      });
      return new Response(body, response);
    };
    const got: string[] = [];
    for await (const event of client({ fetch: dropping }).stream({ after: start })) {
      got.push(event.id);
      if (got.length === 3) break;
    }
    const ids = [1n, 2n, 3n].map((n) => (BigInt(start) + n).toString());
    assert.deepEqual(got, ids); // nothing lost, nothing repeated
    assert.deepEqual(resumedFrom, [start, ids[0], ids[1]]);
  });

  test("gives up after maxReconnects failed connections in a row", async () => {
    let attempts = 0;
    const refused = async (): Promise<Response> => {
      attempts += 1;
      throw new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED") });
    };
    const stream = client({ fetch: refused }).stream({ maxReconnects: 2 });
    await rejects(stream.next(), "UNAVAILABLE");
    assert.equal(attempts, 3);
  });
});

describe("errors are problems typed by code", () => {
  test("error answers", async () => {
    const sidecar = client();
    const [user, key] = [freshUser(), unique()];
    await sidecar.putDefinition(key, { name: "Errors" });
    const missing = await rejects(sidecar.unlock(user, { key: unique() }), "ACHIEVEMENT_NOT_FOUND");
    assert.deepEqual([missing.status, missing.problem.status], [404, 404]);
    assert.ok(missing.title && missing.detail);
    assert.ok(missing instanceof Error);

    const invalid = await rejects(sidecar.createDefinition({ name: "" }), "VALIDATION_FAILED");
    assert.deepEqual(invalid.errors?.map((e) => e.field), ["name"]);
    await rejects(sidecar.createDefinition({ name: "Twin", key }), "KEY_CONFLICT");
    await sidecar.upsertProgress(user, { key }, { current: "three" });
    await rejects(sidecar.apply(user, { key }, [Op.inc("current")]), "NOT_A_NUMBER");
    await rejects(sidecar.upsertProgress("0123", { key }), "VALIDATION_FAILED"); // not canonical
    const reused = unique("key");
    await sidecar.unlock(user, { key }, { idempotencyKey: reused });
    await rejects(
      sidecar.unlock(freshUser(), { key }, { idempotencyKey: reused }),
      "IDEMPOTENCY_KEY_REUSED",
    );
  });

  test("every code of the service is known to the client", () => {
    const codes = (process.env.SIDECAR_ERROR_CODES ?? "").split(",").filter(Boolean);
    assert.ok(codes.length > 10, "set SIDECAR_ERROR_CODES to the service's codes");
    const known: readonly string[] = PROBLEM_CODES;
    assert.deepEqual(codes.filter((code) => !known.includes(code)), []);
  });

  test("an answer that is no problem body is still a SidecarError", async () => {
    const proxy = async () => new Response("<html>Bad Gateway</html>", { status: 502 });
    const error = await rejects(client({ fetch: proxy }).stats(), "HTTP_502");
    assert.deepEqual([error.status, error.detail], [502, "<html>Bad Gateway</html>"]);
  });
});

describe("retries and idempotency keys", () => {
  test("a write retried after a lost answer counts once, and says it was replayed", async () => {
    const [user, key] = [freshUser(), unique()];
    await client().putDefinition(key, { name: "Retried", metadata: { target: 1 } });
    const lost = answerLost(2);
    const sidecar = client({ fetch: lost.fetch });
    const answer = await sidecar.detailed.apply(user, { key }, [Op.inc("current")], {
      unlockWhen: [When.gte("current", 1)],
    });
    // The first (stored) answer: this request unlocked it.
    assert.deepEqual([answer.value.newlyUnlocked, answer.value.metadata], [true, { current: 1 }]);
    assert.equal(answer.replayed, true);
    assert.equal(lost.seen.length, 3);
    assert.equal(new Set(lost.seen.map((s) => JSON.stringify([s.key, s.body, s.path]))).size, 1);
    assert.equal(answer.idempotencyKey, lost.seen[0]?.key);
    assert.match(answer.idempotencyKey ?? "", /^[0-9a-f-]{36}$/);
    assert.deepEqual(lost.seen.map((s) => s.replayed), [null, "true", "true"]);
    assert.ok(lost.seen.every((s) => s.prefer === "ids=string"));
    assert.deepEqual(JSON.parse(lost.seen[0]!.body).userId, user); // sent as a string

    const row = await sidecar.getProgress(user, { key });
    assert.deepEqual(row?.metadata, { current: 1 });
  });

  test("each write has its own key unless one is given; reads carry none", async () => {
    const lost = answerLost(0);
    const sidecar = client({ fetch: lost.fetch });
    const achievement = await sidecar.createDefinition({ name: unique("Keys") });
    await sidecar.unlock(freshUser(), achievement);
    const mine = unique("my-key");
    const first = await sidecar.detailed.unlock(freshUser(), achievement, { idempotencyKey: mine });
    const again = await sidecar.detailed.unlock(freshUser(), achievement, { idempotencyKey: mine })
      .catch((error: unknown) => error);
    await sidecar.getDefinition(achievement);
    const keys = lost.seen.map((s) => s.key);
    assert.ok(keys[0] && keys[1] && keys[0] !== keys[1]);
    assert.deepEqual([keys[2], first.replayed, first.idempotencyKey], [mine, false, mine]);
    assert.ok(again instanceof SidecarError && again.code === "IDEMPOTENCY_KEY_REUSED");
    assert.equal(keys[4], null);
  });

  test("an unreachable sidecar gives up after bounded retries, with one key", async () => {
    const attempts: (string | null)[] = [];
    const refused = async (input: FetchInput, init?: RequestInit): Promise<Response> => {
      attempts.push(new Request(input, init).headers.get("idempotency-key"));
      throw new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED") });
    };
    const sidecar = client({ fetch: refused, retries: 2 });
    const error = await rejects(sidecar.unlock(SNOWFLAKE, { id: "1" }), "UNAVAILABLE");
    assert.ok(error instanceof SidecarUnavailable);
    assert.equal(error.status, 0);
    assert.deepEqual([attempts.length, new Set(attempts).size], [3, 1]);
    assert.ok(error.cause instanceof TypeError);
  });

  test("settings from SIDECAR_* when not given", () => {
    const sidecar = new AchievementsClient();
    assert.equal(sidecar.baseUrl, URL_OF_SIDECAR?.replace(/\/+$/, ""));
    assert.deepEqual([sidecar.retries, sidecar.timeoutMs, sidecar.backoffMs], [3, 10_000, 200]);
  });
});
