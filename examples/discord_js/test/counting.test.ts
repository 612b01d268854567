import assert from "node:assert/strict";
import { test } from "node:test";

import { AchievementLogic, MESSAGE_BADGES } from "../src/achievements.js";
import { ANN, BADGES, BOB, BOT, cursorPath, message, sidecar, startBot } from "./helpers.js";

async function current(user: string, key: string): Promise<unknown> {
  const row = await sidecar().getProgress(user, { key });
  return row === null ? null : (row.metadata as { current: unknown }).current;
}

test("messages count once each and unlock at their target", async () => {
  const logic = await startBot();
  const client = sidecar();
  const unlocked = [];
  for (let m = 1; m <= 5; m++) unlocked.push(await logic.handleMessage(message(m, ANN)));
  const keys = [];
  for (const changes of unlocked) {
    const named = [];
    for (const change of changes) {
      named.push((await client.getDefinition({ id: change.achievementId })).key);
      assert.deepEqual([change.userId, typeof change.unlockedAt], [ANN, "string"]);
    }
    keys.push(named);
  }
  assert.deepEqual(keys, [["first-message"], [], ["regular"], [], ["chatterbox"]]);
  for (const badge of BADGES) assert.equal(await current(ANN, badge.key), 5);

  const first = await logic.handleMessage(message(7001, BOB));
  assert.equal(first.length, 1);
  const again = await logic.handleMessage(message(7001, BOB)); // gateway replay, or a restart
  // The stored answer comes back: the same rows, no second count.
  assert.deepEqual(again.map((c) => [c.id, c.newlyUnlocked]), first.map((c) => [c.id, true]));
  assert.equal(await current(BOB, "regular"), 1);
  await logic.handleMessage(message(7002, BOB));
  assert.equal(await current(BOB, "regular"), 2);

  assert.deepEqual(await logic.handleMessage(message(9001, BOT, true)), []); // bots do not count
  assert.deepEqual(await client.listProgress(BOT), []);
  const events = await client.events();
  assert.deepEqual(
    events.map((e) => [e.userId, e.id]),
    [[ANN, "1"], [ANN, "2"], [ANN, "3"], [BOB, "4"]],
  );

  // A redeployed bot with other targets: definitions replaced by key, progress kept.
  const before = new Map((await client.listDefinitions()).map((d) => [d.key, d.id]));
  const redeployed = new AchievementLogic(client, cursorPath());
  await redeployed.setup();
  await redeployed.setup();
  assert.deepEqual(new Map((await client.listDefinitions()).map((d) => [d.key, d.id])), before);
  assert.deepEqual([...before.keys()].sort(), MESSAGE_BADGES.map((b) => b.key).sort());
  const chatter = await client.getDefinition({ key: "chatterbox" });
  assert.deepEqual(chatter.metadata, { target: 1000, icon: "\u{1f4e3}", category: "messages" });
  assert.equal(await current(ANN, "chatterbox"), 5);
});
