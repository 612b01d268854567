import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULT_ICON,
  GOLD,
  GREY,
  discordTime,
  fieldValue,
  progressBar,
} from "../src/achievements.js";
import { ANN, BOB, CAT, message, sidecar, startBot } from "./helpers.js";

const [FULL, EMPTY] = ["\u2588", "\u2591"];

test("the profile embed's data", async () => {
  const logic = await startBot();
  const client = sidecar();
  for (let m = 1; m <= 3; m++) await logic.handleMessage(message(m, ANN));
  await logic.handleMessage(message(10, BOB));
  const hidden = { name: "Secret", metadata: { hidden: true } };
  const secret = await client.putDefinition("secret", hidden);
  const shiny = await client.putDefinition("shiny", { name: "Shiny", metadata: { icon: "S" } });
  await client.upsertProgress(ANN, { key: "shiny" }, { current: 2, target: 8 });
  const rows = new Map((await client.listProgress(ANN)).map((r) => [r.achievementId, r]));
  const ids: Record<string, string> = {};
  for (const key of ["first-message", "regular", "chatterbox"]) {
    ids[key] = (await client.getDefinition({ key })).id;
  }
  const unlockedAt = (key: string) => rows.get(ids[key]!)?.unlockedAt ?? "";

  const embed = await logic.profile(ANN, "Ann*");
  assert.equal(embed.title, "Ann\\*'s achievements");
  assert.equal(embed.description, "2 of 4 unlocked \u00b7 rank #1"); // the hidden one not counted
  assert.equal(embed.color, GOLD);
  assert.deepEqual(
    embed.unlocked.map((l) => [l.achievementId, l.name, l.icon, l.unlockRate, l.unlockedAt]),
    [
      [ids.regular, "Regular", "R", 0.5, unlockedAt("regular")],
      [ids["first-message"], "First words", "W", 1, unlockedAt("first-message")],
    ],
  );
  // Definitions in name order; target from the definition, or from the row (Shiny).
  assert.deepEqual(
    embed.locked.map((l) => [l.achievementId, l.name, l.icon, l.unlockRate, l.current, l.target]),
    [
      [ids.chatterbox, "Chatter_box", "C", 0, 3, 5],
      [shiny.id, "Shiny", "S", 0, 2, 8],
    ],
  );
  assert.ok(!embed.locked.some((l) => l.achievementId === secret.id));

  const [unlockedField, lockedField] = embed.fields;
  assert.equal(unlockedField?.name, "Unlocked (2)");
  assert.deepEqual(unlockedField?.value.split("\n"), [
    `R **Regular** \u2014 ${discordTime(unlockedAt("regular"))} \u00b7 50%`,
    `W **First words** \u2014 ${discordTime(unlockedAt("first-message"))} \u00b7 100%`,
  ]);
  assert.equal(lockedField?.name, "In progress (2)");
  assert.deepEqual(lockedField?.value.split("\n"), [
    `C Chatter\\_box \`${FULL.repeat(6)}${EMPTY.repeat(4)}\` 3/5 \u00b7 0%`,
    `S Shiny \`${FULL.repeat(2)}${EMPTY.repeat(8)}\` 2/8 \u00b7 0%`,
  ]);

  // A member with nothing: everything (but the hidden one) in progress at 0.
  const nobody = await logic.profile(CAT);
  assert.deepEqual(
    [nobody.title, nobody.description, nobody.color],
    [`User ${CAT}'s achievements`, "0 of 4 unlocked", GREY],
  );
  assert.deepEqual([nobody.unlocked, nobody.fields[0]?.value], [[], "\u2014"]);
  assert.deepEqual(nobody.locked.map((l) => [l.name, l.current, l.target]), [
    ["Chatter_box", 0, 5],
    ["First words", 0, 1],
    ["Regular", 0, 3],
    ["Shiny", 0, null], // its target is in ANN's row only: no bar
  ]);
  assert.deepEqual(nobody.fields[1]?.value.split("\n"), [
    `C Chatter\\_box \`${EMPTY.repeat(10)}\` 0/5 \u00b7 0%`,
    `W First words \`${EMPTY.repeat(10)}\` 0/1 \u00b7 100%`,
    `R Regular \`${EMPTY.repeat(10)}\` 0/3 \u00b7 50%`,
    "S Shiny \u00b7 0%",
  ]);
});

test("progress bars and long fields", () => {
  assert.equal(progressBar(0, 10), EMPTY.repeat(10));
  assert.equal(progressBar(25, 10), FULL.repeat(10));
  assert.equal(progressBar(1, 3), FULL.repeat(3) + EMPTY.repeat(7));
  assert.equal(progressBar(99, 100), FULL.repeat(9) + EMPTY); // full only when reached
  const lines = Array.from(
    { length: 60 },
    (_, n) => `${DEFAULT_ICON} badge number ${String(n).padStart(3, "0")} with a long enough name`,
  );
  const value = fieldValue(lines);
  assert.ok(value.length <= 1024);
  const kept = value.split("\n");
  assert.deepEqual(kept.slice(0, -1), lines.slice(0, kept.length - 1));
  assert.equal(kept.at(-1), `\u2026 and ${60 - (kept.length - 1)} more`);
});
