/**
 * The discord.js glue of the achievements example (the logic is in achievements.ts): counts
 * every member's messages, announces unlocks in a channel, answers `/achievements [user]`.
 *
 *     DISCORD_TOKEN=... ANNOUNCE_CHANNEL_ID=... npm start
 *
 * Settings: SIDECAR_URL, SIDECAR_TOKEN (the sidecar), ANNOUNCE_CHANNEL_ID (where unlocks are
 * announced; none: no posts), ACHIEVEMENTS_CURSOR_FILE (default ./achievements-cursor.json).
 */

import {
  Client,
  EmbedBuilder,
  Events,
  GatewayIntentBits,
  SlashCommandBuilder,
  type ChatInputCommandInteraction,
} from "discord.js";
import { AchievementsClient } from "achievements-sidecar-client";

import { AchievementLogic, type Announcement, type ProfileEmbed } from "./achievements.js";

const RETRY_MS = 5000;

const command = new SlashCommandBuilder()
  .setName("achievements")
  .setDescription("Show achievements and progress")
  .addUserOption((option) =>
    option.setName("user").setDescription("Whose achievements (yours by default)"),
  );

function toEmbed(data: ProfileEmbed): EmbedBuilder {
  return new EmbedBuilder()
    .setTitle(data.title)
    .setDescription(data.description)
    .setColor(data.color)
    .addFields(data.fields)
    .setFooter({ text: data.footer });
}

async function main(): Promise<void> {
  const logic = new AchievementLogic(
    new AchievementsClient(),
    process.env.ACHIEVEMENTS_CURSOR_FILE ?? "achievements-cursor.json",
  );
  await logic.setup();
  const channelId = process.env.ANNOUNCE_CHANNEL_ID;
  // Counting needs no message content: no privileged intent.
  const discord = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages],
  });

  async function announce(announcement: Announcement): Promise<void> {
    if (!channelId) return;
    const channel = await discord.channels.fetch(channelId);
    if (!channel?.isSendable()) throw new Error(`cannot post in channel ${channelId}`);
    await channel.send({
      content: announcement.text,
      allowedMentions: { users: [announcement.userId] },
    });
  }

  async function watch(): Promise<never> {
    for (;;) {
      try {
        await logic.watchUnlocks(announce);
      } catch (error) {
        // Discord or the sidecar away for a moment: go on from the cursor.
        console.error("announcing unlocks failed; again in 5 s", error);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  async function profile(interaction: ChatInputCommandInteraction): Promise<void> {
    const user = interaction.options.getUser("user") ?? interaction.user;
    const data = await logic.profile(user.id, user.displayName);
    await interaction.reply({ embeds: [toEmbed(data)] });
  }

  discord.once(Events.ClientReady, async (ready) => {
    await ready.application.commands.set([command.toJSON()]);
    void watch();
  });
  discord.on(Events.MessageCreate, (message) => {
    logic.handleMessage(message).catch((error: unknown) => {
      console.error(`counting message ${message.id} failed`, error);
    });
  });
  discord.on(Events.InteractionCreate, (interaction) => {
    if (!interaction.isChatInputCommand() || interaction.commandName !== command.name) return;
    profile(interaction).catch((error: unknown) => console.error("/achievements failed", error));
  });
  await discord.login(process.env.DISCORD_TOKEN);
}

await main();
