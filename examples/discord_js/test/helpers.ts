// Shared by the example's tests: they drive its logic with fake discord.js messages against a
// real sidecar (SIDECAR_URL; tests/test_discord_js_example.py starts a fresh one per file).

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { AchievementsClient } from "achievements-sidecar-client";

import {
  AchievementLogic,
  badge,
  type Announcement,
  type Badge,
  type Message,
} from "../src/achievements.js";

export const BADGES: Badge[] = [
  badge("first-message", "First words", "Send your first message", 1, "W"),
  badge("regular", "Regular", "Send 3 messages", 3, "R"),
  badge("chatterbox", "Chatter_box", "Send 5 messages", 5, "C"),
];
// Snowflakes above 2^53, as discord.js gives them: strings.
export const ANN = "111111111111111111";
export const BOB = "222222222222222222";
export const CAT = "444444444444444444";
export const BOT = "333333333333333333";

export function sidecar(): AchievementsClient {
  const url = process.env.SIDECAR_URL;
  if (!url) throw new Error("set SIDECAR_URL to a running sidecar");
  return new AchievementsClient({ baseUrl: url, backoffMs: 0 });
}

/** What discord.js hands to messageCreate, as far as the bot reads it. */
export function message(id: number, author: string, bot = false): Message {
  return { id: String(1_000_000_000_000_000_000n + BigInt(id)), author: { id: author, bot } };
}

export function cursorPath(): string {
  return join(mkdtempSync(join(tmpdir(), "achievements-")), "cursor.json");
}

/** A bot started with a new cursor file (its first start), set up. */
export async function startBot(path = cursorPath(), badges = BADGES): Promise<AchievementLogic> {
  const logic = new AchievementLogic(sidecar(), path, badges);
  await logic.setup();
  return logic;
}

/** Collects what the bot would post; fails on demand. */
export class Channel {
  posted: Announcement[] = [];
  failOn = new Set<string>();

  send = async (announcement: Announcement): Promise<void> => {
    if (this.failOn.delete(announcement.eventId)) throw new Error("Discord is away");
    this.posted.push(announcement);
  };
}
