// The message field: plain text to the current conversation, or a /command.

import { LOBBY, state } from "./state.js";
import { dmConv, isRoom, select, system } from "./conversations.js";
import { send } from "./connection.js";

const HELP = [
  "/join ROOM          join ROOM and talk there",
  "/leave [ROOM]       leave ROOM (default: the current room)",
  "/msg NAME TEXT      send a private message",
  "/nick NAME          change your name",
  "/who [ROOM]         list the users in ROOM (default: the current room)",
  "/rooms              list the rooms",
  "/history [N]        show the last N messages of the current room",
  "/register PASSWORD  make your name an account (when the server has accounts)",
  "/passwd OLD NEW     change your account's password",
  "/quit [REASON]      leave the chat",
  "/help               show this list",
  "//text              send text that starts with /",
  "Alt+Up, Alt+Down    previous or next conversation",
];

// ---------------------------------------------------------------- commands

export function command(line) {
  const c = state.convs.get(state.current);
  if (line.startsWith("//") || !line.startsWith("/")) {
    const text = line.startsWith("//") ? line.slice(1) : line;
    return send(isRoom(c) ? { type: "say", room: c.title, text } : { type: "dm", to: c.title, text });
  }
  const [word, ...rest] = line.slice(1).split(" ");
  const argument = rest.join(" ").trim();
  const first = argument.split(" ")[0];
  const here = isRoom(c) ? c.title : LOBBY;
  switch (word.toLowerCase()) {
    case "join":
      if (!first) return usage("/join ROOM");
      state.pendingJoin = "#" + first.toLowerCase();
      return send({ type: "join", room: first });
    case "leave": return send({ type: "leave", room: first || here });
    case "msg": {
      const text = argument.slice(first.length).trim();
      if (!first || !text) return usage("/msg NAME TEXT");
      select(dmConv(first).key);
      return send({ type: "dm", to: first, text });
    }
    case "nick": return first ? send({ type: "nick", name: first }) : usage("/nick NAME");
    case "who": return send({ type: "who", room: first || here });
    case "rooms": return send({ type: "rooms" });
    case "history": {
      const limit = Number.parseInt(first || "20", 10);
      const request = { type: "history", limit: Number.isFinite(limit) ? limit : 20 };
      if (isRoom(c)) request.room = c.title; else request.with = c.title;
      return send(request);
    }
    case "register":
      if (!argument) return usage("/register PASSWORD");
      state.password = argument;
      return send({ type: "register", password: argument });
    case "passwd": {
      const [old, fresh] = argument.split(" ");
      if (!old || !fresh) return usage("/passwd OLD NEW");
      state.password = fresh;
      return send({ type: "passwd", old, new: fresh });
    }
    case "quit":
      state.stopped = true;
      return send(argument ? { type: "quit", reason: argument } : { type: "quit" });
    case "help": HELP.forEach((text) => system(text)); return true;
    default: system(`Unknown command /${word}; /help lists them.`); return false;
  }
}

function usage(text) { system("Usage: " + text); return false; }
