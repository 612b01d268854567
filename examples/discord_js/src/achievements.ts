/**
 * Achievements for a discord.js bot, kept by the achievements sidecar: the logic, on the
 * TypeScript client only (no discord.js here), so that it is testable without Discord.
 * `bot.ts` wires it to discord.js. The counterpart of examples/discord_bot/cog.py.
 *
 * - Counts each member's messages with one atomic `apply` per badge (`inc current`, unlocking
 *   when `current >= target`), all in one batch whose Idempotency-Key is the message id: a
 *   message that Discord delivers twice, or that the bot handles again after a restart, counts
 *   once.
 * - Announces each unlock from the sidecar's unlock feed, never from `newlyUnlocked`, with the
 *   position in the feed kept in a small file. What holds: every unlock after the bot's first
 *   start is posted, in order, and once, but for the one that was being posted if the bot dies
 *   between Discord's answer and writing the file (that one is posted again after the restart).
 *   `newlyUnlocked` cannot do as well: a redelivered message gets the stored answer back, with
 *   `newlyUnlocked` true again (`sidecar.detailed.batch(...)` says `replayed`), and an unlock
 *   that the bot did not see the answer of (a crash, a timeout) would never be announced.
 * - On its first start (no cursor file), it begins at the feed's end: unlocks from before the
 *   bot existed are not announced as a burst into the channel.
 * - `/achievements [user]` answers with an embed: unlocked badges with their dates, progress
 *   bars for the locked ones (`current` of the row, `target` of the row or the definition),
 *   rarity and rank.
 *
 * Every id is a string, as discord.js gives them: `message.author.id` goes to the sidecar as is.
 */

import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";

import {
  Batch,
  Op,
  SidecarError,
  When,
  type Achievement,
  type AchievementsClient,
  type Event,
  type JsonObject,
  type UserAchievementChange,
} from "achievements-sidecar-client";

export const BAR_WIDTH = 10;
const FIELD_LIMIT = 1024; // characters in one embed field's value
export const GOLD = 0xf1c40f;
export const GREY = 0x95a5a6;
export const DEFAULT_ICON = "\u{1f3c6}";

/** A message-count badge: synced to the sidecar by key at start-up. */
export interface Badge {
  key: string;
  name: string;
  description: string;
  target: number;
  icon: string;
}

export function badge(
  key: string,
  name: string,
  description: string,
  target: number,
  icon = DEFAULT_ICON,
): Badge {
  return { key, name, description, target, icon };
}

export const MESSAGE_BADGES: readonly Badge[] = [
  badge("first-message", "First words", "Send your first message", 1, "\u{1f44b}"),
  badge("regular", "Regular", "Send 100 messages", 100, "\u{1f4ac}"),
  badge("chatterbox", "Chatterbox", "Send 1,000 messages", 1000, "\u{1f4e3}"),
];

/** What the bot reads of a discord.js Message. */
export interface Message {
  id: string;
  author: { id: string; bot: boolean };
}

export interface Announcement {
  eventId: string;
  userId: string;
  achievementId: string;
  name: string;
  icon: string;
  unlockRate: number;
  text: string;
}

export interface BadgeLine {
  achievementId: string;
  name: string;
  icon: string;
  unlockRate: number;
  unlockedAt: string | null;
  current?: number;
  target?: number | null;
}

export interface EmbedField {
  name: string;
  value: string;
  inline: boolean;
}

/** Everything the `/achievements` embed shows, as plain data. */
export interface ProfileEmbed {
  title: string;
  description: string;
  color: number;
  unlocked: BadgeLine[];
  locked: BadgeLine[];
  fields: EmbedField[];
  footer: string;
}

export type Send = (announcement: Announcement) => Promise<void>;

// --- small helpers --------------------------------------------------------------------------

export function escapeMarkdown(text: string): string {
  return text.replace(/[\\*_~`|>]/g, (mark) => `\\${mark}`);
}

export function progressBar(current: number, target: number, width = BAR_WIDTH): string {
  // Rounded down: the bar is full only when the target is reached.
  const filled = target <= 0 ? 0 : Math.floor(width * Math.max(0, Math.min(1, current / target)));
  return "\u2588".repeat(filled) + "\u2591".repeat(width - filled);
}

export function percent(rate: number): string {
  if (rate > 0 && rate < 0.001) return "<0.1%";
  return `${(rate * 100).toFixed(1)}%`.replace(".0%", "%");
}

export function showNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

function numberOf(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A Discord timestamp tag: every reader sees the date in their own time zone. */
export function discordTime(stamp: string): string {
  return `<t:${Math.floor(Date.parse(stamp) / 1000)}:d>`;
}

export function iconOf(metadata: JsonObject): string {
  const icon = metadata.icon;
  return typeof icon === "string" && icon.length > 0 && icon.length <= 16 ? icon : DEFAULT_ICON;
}

/** Lines joined, cut to what one embed field holds. */
export function fieldValue(lines: string[]): string {
  const shown: string[] = [];
  for (const [index, line] of lines.entries()) {
    const tail = `\u2026 and ${lines.length - index} more`;
    if ([...shown, line].join("\n").length + tail.length + 1 > FIELD_LIMIT) {
      return [...shown, tail].join("\n");
    }
    shown.push(line);
  }
  return shown.join("\n") || "\u2014";
}

function metadataOf(item: { metadata: unknown }): JsonObject {
  return (item.metadata ?? {}) as JsonObject;
}

/** The id of the last announced unlock event, in a small JSON file (replaced atomically). */
export class CursorFile {
  constructor(readonly path: string) {}

  /** The saved id; null before the first save. */
  load(): string | null {
    if (!existsSync(this.path)) return null;
    return String((JSON.parse(readFileSync(this.path, "utf8")) as { after: string }).after);
  }

  save(after: string): void {
    const temporary = `${this.path}.tmp`;
    writeFileSync(temporary, JSON.stringify({ after }), { flush: true });
    renameSync(temporary, this.path);
  }
}

/** The id of the newest unlock event, "0" when there is none. Event ids start at 1 and grow by
 * one, none skipped (API.md), so whether id N exists is one `events({ after: N-1, limit: 1 })`;
 * the end is found by doubling, then halving: about 2 log2(N) small requests, not N/1000 pages.
 * BigInt: event ids are 64-bit. */
export async function feedEnd(sidecar: AchievementsClient): Promise<string> {
  const exists = async (id: bigint) =>
    (await sidecar.events({ after: (id - 1n).toString(), limit: 1 })).length > 0;
  let [low, high] = [0n, 1n]; // id `low` exists (or is 0), id `high` is to be tried
  while (await exists(high)) [low, high] = [high, high * 2n];
  while (high - low > 1n) {
    // `high` does not exist
    const middle = (low + high) / 2n;
    if (await exists(middle)) low = middle;
    else high = middle;
  }
  return low.toString();
}

// --- the logic ------------------------------------------------------------------------------

export class AchievementLogic {
  readonly cursor: CursorFile;
  private definitions = new Map<string, Achievement>();

  constructor(
    readonly sidecar: AchievementsClient,
    cursor: CursorFile | string,
    readonly badges: readonly Badge[] = MESSAGE_BADGES,
  ) {
    this.cursor = typeof cursor === "string" ? new CursorFile(cursor) : cursor;
  }

  /** Create or update the badges' definitions (by key: safe to run at every start); on the
   * first start, place the cursor at the feed's end. */
  async setup(): Promise<void> {
    for (const badge of this.badges) {
      await this.sidecar.putDefinition(badge.key, {
        name: badge.name,
        description: badge.description,
        metadata: { target: badge.target, icon: badge.icon, category: "messages" },
      });
    }
    await this.start();
  }

  /** The saved cursor; the feed's end on the first start (then saved). */
  private async start(): Promise<string> {
    let after = this.cursor.load();
    if (after === null) {
      after = await feedEnd(this.sidecar);
      this.cursor.save(after);
    }
    return after;
  }

  // counting

  /** The bot's messageCreate: bots do not count. */
  async handleMessage(message: Message): Promise<UserAchievementChange[]> {
    if (message.author.bot) return [];
    return this.onMessage(message.author.id, message.id);
  }

  /** Count one message for every badge, atomically; returns what it newly unlocked (for the
   * caller's own use: announcements come from the feed, see the module's comment). */
  async onMessage(authorId: string, messageId: string): Promise<UserAchievementChange[]> {
    const operations = this.badges.map((badge) =>
      Batch.apply(authorId, { key: badge.key }, [Op.inc("current")], [
        When.gte("current", badge.target),
      ]),
    );
    // The message id as the key: the same message counts once, however often it comes.
    const results = await this.sidecar.batch(operations, {
      idempotencyKey: `discord-message:${messageId}`,
    });
    return results.filter(
      (result): result is UserAchievementChange =>
        "newlyUnlocked" in result && result.newlyUnlocked === true,
    );
  }

  // announcing

  private async definition(achievementId: string): Promise<Achievement | undefined> {
    if (!this.definitions.has(achievementId)) {
      const all = await this.sidecar.listDefinitions();
      this.definitions = new Map(all.map((definition) => [definition.id, definition]));
    }
    return this.definitions.get(achievementId);
  }

  private async rates(): Promise<Map<string, number>> {
    const stats = await this.sidecar.stats();
    return new Map(stats.map((s) => [s.achievementId, s.unlockRate]));
  }

  private async announcement(event: Event, rates: Map<string, number>): Promise<Announcement> {
    const definition = await this.definition(event.achievementId);
    const name = definition?.name ?? `achievement #${event.achievementId}`; // deleted since
    const icon = definition ? iconOf(metadataOf(definition)) : DEFAULT_ICON;
    const unlockRate = rates.get(event.achievementId) ?? 0;
    const text =
      `${icon} <@${event.userId}> unlocked **${escapeMarkdown(name)}**! ` +
      `(${percent(unlockRate)} of members have it)`;
    const { id: eventId, userId, achievementId } = event;
    return { eventId, userId, achievementId, name, icon, unlockRate, text };
  }

  /** Send every unlock after the saved cursor, oldest first, saving the cursor after each one
   * sent; an error in `send` stops here and the next call starts with that unlock. */
  async announceNewUnlocks(send: Send, page = 100): Promise<Announcement[]> {
    const sent: Announcement[] = [];
    let after = await this.start();
    for (;;) {
      const events = await this.sidecar.events({ after, limit: page });
      if (events.length === 0) return sent;
      const rates = await this.rates();
      for (const event of events) {
        const announcement = await this.announcement(event, rates);
        await send(announcement);
        after = event.id;
        this.cursor.save(after);
        sent.push(announcement);
      }
    }
  }

  /** The same, live: follows the feed's stream from the saved cursor until `signal` aborts. */
  async watchUnlocks(send: Send, signal?: AbortSignal): Promise<void> {
    const after = await this.start();
    for await (const event of this.sidecar.stream({ after, ...(signal ? { signal } : {}) })) {
      await send(await this.announcement(event, await this.rates()));
      this.cursor.save(event.id);
    }
  }

  // the profile

  async profile(userId: string, displayName?: string): Promise<ProfileEmbed> {
    const definitions = await this.sidecar.listDefinitions();
    const rows = new Map(
      (await this.sidecar.listProgress(userId)).map((row) => [row.achievementId, row]),
    );
    const rates = await this.rates();
    const unlocked: BadgeLine[] = [];
    const locked: BadgeLine[] = [];
    for (const definition of definitions) {
      const meta = metadataOf(definition);
      const row = rows.get(definition.id);
      const line = {
        achievementId: definition.id,
        name: definition.name,
        icon: iconOf(meta),
        unlockRate: rates.get(definition.id) ?? 0,
      };
      if (row?.unlockedAt) {
        unlocked.push({ ...line, unlockedAt: row.unlockedAt });
        continue;
      }
      if (meta.hidden === true) continue;
      const rowMeta = row ? metadataOf(row) : {};
      const target = numberOf(rowMeta.target) ?? numberOf(meta.target);
      locked.push({ ...line, unlockedAt: null, current: numberOf(rowMeta.current) ?? 0, target });
    }
    unlocked.sort((a, b) => (b.unlockedAt ?? "").localeCompare(a.unlockedAt ?? ""));

    let rank = "";
    try {
      rank = ` \u00b7 rank #${(await this.sidecar.leaderboardEntry(userId)).rank}`;
    } catch (error) {
      if (!(error instanceof SidecarError && error.code === "USER_NOT_FOUND")) throw error;
    }
    const who = escapeMarkdown(displayName ?? `User ${userId}`);
    const total = unlocked.length + locked.length;
    return {
      title: `${who}'s achievements`,
      description: `${unlocked.length} of ${total} unlocked${rank}`,
      color: unlocked.length > 0 ? GOLD : GREY,
      unlocked,
      locked,
      fields: [
        {
          name: `Unlocked (${unlocked.length})`,
          value: fieldValue(unlocked.map(unlockedLine)),
          inline: false,
        },
        {
          name: `In progress (${locked.length})`,
          value: fieldValue(locked.map(lockedLine)),
          inline: false,
        },
      ],
      footer: "Rarity: the share of members with any progress who unlocked it",
    };
  }
}

function unlockedLine(line: BadgeLine): string {
  return (
    `${line.icon} **${escapeMarkdown(line.name)}** \u2014 ${discordTime(line.unlockedAt ?? "")}` +
    ` \u00b7 ${percent(line.unlockRate)}`
  );
}

function lockedLine(line: BadgeLine): string {
  let text = `${line.icon} ${escapeMarkdown(line.name)}`;
  if (line.target != null && line.target > 0 && line.current !== undefined) {
    const bar = progressBar(line.current, line.target);
    text += ` \`${bar}\` ${showNumber(line.current)}/${showNumber(line.target)}`;
  }
  return `${text} \u00b7 ${percent(line.unlockRate)}`;
}
