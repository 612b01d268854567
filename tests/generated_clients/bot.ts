// A bot's calls through openapi-fetch on the types that openapi-typescript generates from the
// live document (run by tests/test_generated_clients.py after `tsc --strict`): create by key
// (201), upsert, apply `inc` with `unlockWhen`, get, list, unlock twice, the events feed, stats,
// the leaderboard, delete a user, a 404 read as a typed problem. Discord ids travel as strings
// (`Prefer: ids=string`) and must come back exactly. Any failure throws.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import createClient from "openapi-fetch";

import type { paths } from "./schema.js";

const USERS = ["80351110224678912", "9223372036854775807"]; // above 2^53; 2^63 - 1

const api = createClient<paths>({
  baseUrl: process.env.SIDECAR_URL,
  headers: { Prefer: "ids=string" },
});

const key = `worker-${randomUUID().slice(0, 8)}`;
const path = { key };
const created = await api.PUT("/users/achievements/definitions/by-key/{key}", {
  params: { path },
  body: { name: "Worker I", metadata: { target: 2 } },
});
assert.equal(created.response.status, 201);
assert.equal(created.data?.key, key);
const replaced = await api.PUT("/users/achievements/definitions/by-key/{key}", {
  params: { path },
  body: { name: "Worker I" },
});
assert.equal(replaced.response.status, 200);
const achievementId = String(created.data?.id);

for (const userId of USERS) {
  const row = await api.POST("/users/achievements/progress", {
    body: { userId, achievementKey: key, metadata: { current: 1 } },
  });
  assert.equal(row.data?.userId, userId);

  const change = await api.POST("/users/achievements/progress/apply", {
    body: {
      userId,
      achievementId,
      ops: [{ op: "inc", path: "current", value: 1 }],
      unlockWhen: [{ path: "current", gte: 2 }],
    },
  });
  assert.deepEqual([change.data?.userId, change.data?.newlyUnlocked], [userId, true]);

  const got = await api.GET("/users/achievements/progress", {
    params: { query: { userId, achievementId } },
  });
  assert.equal(got.data?.userId, userId);
  const listed = await api.GET("/users/achievements/progress/list", {
    params: { query: { userId } },
  });
  assert.deepEqual(listed.data?.map((r) => r.userId), [userId]);

  const again = await api.PUT("/users/achievements/progress/unlock", {
    body: { userId, achievementId },
  });
  assert.deepEqual([again.data?.userId, again.data?.newlyUnlocked], [userId, false]);
}

const feed = await api.GET("/users/achievements/events", {
  params: { query: { after: 0, limit: 1000 } },
});
const mine = feed.data?.filter((e) => String(e.achievementId) === achievementId);
assert.deepEqual(mine?.map((e) => e.userId), USERS);

const stats = await api.GET("/users/achievements/stats");
const counts = stats.data?.filter((s) => String(s.achievementId) === achievementId);
assert.deepEqual(counts?.map((s) => s.unlockedCount), [2]);
const board = await api.GET("/users/achievements/leaderboard", {
  params: { query: { limit: 100 } },
});
const listedUsers = new Set(board.data?.map((e) => String(e.userId)));
assert.ok(USERS.every((userId) => listedUsers.has(userId)));

for (const userId of USERS) {
  const deleted = await api.DELETE("/users/{userId}", { params: { path: { userId } } });
  assert.equal(deleted.data?.userId, userId);
}

const missing = await api.GET("/users/achievements/definitions/{id}", {
  params: { path: { id: "4611686018427387904" } },
});
assert.equal(missing.response.status, 404);
assert.equal(missing.error?.code, "ACHIEVEMENT_NOT_FOUND"); // typed: the 404's problem schema
console.log("ok");
