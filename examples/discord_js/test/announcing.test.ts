import assert from "node:assert/strict";
import { test } from "node:test";

import { AchievementLogic, CursorFile, feedEnd, type Announcement } from "../src/achievements.js";
import { ANN, BADGES, BOB, Channel, cursorPath, message, sidecar, startBot } from "./helpers.js";

test("each unlock is announced once, across a restart and a failed post", async () => {
  const path = cursorPath();
  const logic = await startBot(path);
  const channel = new Channel();
  for (let m = 1; m <= 3; m++) await logic.handleMessage(message(m, ANN));
  await logic.handleMessage(message(10, BOB));

  const posted = await logic.announceNewUnlocks(channel.send);
  assert.deepEqual(channel.posted.map((a) => [a.userId, a.name]), [
    [ANN, "First words"],
    [ANN, "Regular"],
    [BOB, "First words"],
  ]);
  assert.deepEqual(posted, channel.posted);
  assert.deepEqual(posted.map((a) => a.eventId), ["1", "2", "3"]);
  assert.equal(posted[0]?.text, `W <@${ANN}> unlocked **First words**! (100% of members have it)`);
  assert.equal(posted[1]?.text, `R <@${ANN}> unlocked **Regular**! (50% of members have it)`);
  assert.equal(new CursorFile(path).load(), "3");

  // Nothing new: nothing posted, also by a restarted bot on the same cursor file.
  assert.deepEqual(await logic.announceNewUnlocks(channel.send), []);
  const restarted = new AchievementLogic(sidecar(), new CursorFile(path), BADGES);
  await restarted.setup();
  assert.deepEqual(await restarted.announceNewUnlocks(channel.send), []);
  assert.equal(channel.posted.length, 3);

  // Discord fails on the second of two new unlocks: the first stays announced, the second
  // comes on the next round, once.
  for (let m = 4; m <= 5; m++) await logic.handleMessage(message(m, ANN)); // ANN: Chatter_box
  for (let m = 11; m <= 12; m++) await logic.handleMessage(message(m, BOB)); // BOB: Regular
  channel.failOn.add("5");
  await assert.rejects(restarted.announceNewUnlocks(channel.send), /Discord is away/);
  assert.deepEqual(channel.posted.map((a) => a.eventId), ["1", "2", "3", "4"]);
  const retried = await restarted.announceNewUnlocks(channel.send);
  assert.deepEqual(retried.map((a) => a.eventId), ["5"]);
  assert.deepEqual(channel.posted.slice(3).map((a) => [a.userId, a.name]), [
    [ANN, "Chatter_box"],
    [BOB, "Regular"],
  ]);
  assert.ok(channel.posted[3]?.text.includes("**Chatter\\_box**")); // markdown in names escaped
});

test("a first start begins at the feed's end; a restart keeps the cursor", async () => {
  const client = sidecar();
  const end = BigInt(await feedEnd(client)); // the previous test's unlocks: a backlog now
  assert.ok(end > 0n);
  const path = cursorPath();
  const logic = await startBot(path);
  const channel = new Channel();
  assert.equal(new CursorFile(path).load(), end.toString());
  assert.deepEqual(await logic.announceNewUnlocks(channel.send), []);

  await logic.handleMessage(message(100, "555555555555555555"));
  const first = await logic.announceNewUnlocks(channel.send);
  assert.deepEqual(first.map((a) => a.eventId), [(end + 1n).toString()]);
  await logic.handleMessage(message(101, "666666666666666666"));
  const restarted = await startBot(path);
  const next = await restarted.announceNewUnlocks(channel.send);
  assert.deepEqual(next.map((a) => a.eventId), [(end + 2n).toString()]);
});

test("feedEnd finds the newest event", async () => {
  const client = sidecar();
  const start = BigInt(await feedEnd(client));
  const badge = await client.createDefinition({ name: "Counted" });
  for (let n = 1n; n <= 9n; n++) {
    await client.unlock((700_000_000_000_000_000n + n).toString(), badge);
    assert.equal(await feedEnd(client), (start + n).toString());
  }
});

test("unlocks are announced live from the stream", { timeout: 30_000 }, async () => {
  const path = cursorPath();
  const logic = await startBot(path);
  const stop = new AbortController();
  const posted: Announcement[] = [];
  let arrived: () => void = () => undefined;
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  const watcher = logic.watchUnlocks(async (announcement) => {
    posted.push(announcement);
    arrived();
  }, stop.signal);
  await logic.handleMessage(message(200, "777777777777777777"));
  await arrival;
  stop.abort();
  await watcher; // ends when aborted
  assert.deepEqual(posted.map((a) => [a.userId, a.name]), [["777777777777777777", "First words"]]);
  assert.equal(new CursorFile(path).load(), posted[0]?.eventId);
});
