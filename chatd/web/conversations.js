// Conversations (rooms and private ones) and their rendering: text from the
// server is only ever inserted as text (textContent), never as HTML.

import { $, LOBBY, state } from "./state.js";

// ------------------------------------------------------------ conversations

function conv(key, title) {
  let found = state.convs.get(key);
  if (!found) {
    found = { key, title, items: [], ids: new Set(), lastId: 0, unread: 0 };
    state.convs.set(key, found);
    renderRooms();
  }
  return found;
}
export const roomConv = (room) => conv("#" + room.toLowerCase(), room);
export const dmConv = (user) => conv("@" + user.toLowerCase(), user);
export const isRoom = (c) => c.key.startsWith("#");

function addItem(c, item) {
  // Messages are kept in id order (a history answer may come after newer live ones).
  let at = c.items.length;
  if (item.id !== undefined) {
    if (c.ids.has(item.id)) return;
    c.ids.add(item.id);
    c.lastId = Math.max(c.lastId, item.id);
    while (at > 0 && c.items[at - 1].id !== undefined && c.items[at - 1].id > item.id) at--;
  }
  c.items.splice(at, 0, item);
  if (c.key === state.current) {
    if (at === c.items.length - 1) appendToLog(item); else renderLog();
  } else if (item.id !== undefined) {
    c.unread++;
    renderRooms();
  }
}

export const system = (text, c = state.convs.get(state.current) || roomConv(LOBBY)) =>
  addItem(c, { system: true, text });

export function addMessage(msg) {
  let c;
  if (msg.to !== undefined) {
    c = dmConv(msg.from.toLowerCase() === (state.name || "").toLowerCase() ? msg.to : msg.from);
  } else {
    c = roomConv(msg.room);
  }
  addItem(c, { id: msg.id, from: msg.from, text: msg.text, ts: msg.ts,
               private: msg.to !== undefined });
}

// ------------------------------------------------------------------ render

function appendToLog(item) {
  const log = $("log");
  const li = document.createElement("li");
  if (item.system) {
    li.className = "system";
    li.textContent = item.text;
  } else {
    if (item.private) li.className = "private";
    const time = document.createElement("time");
    time.className = "time";
    const when = new Date(item.ts * 1000);
    time.dateTime = when.toISOString();
    time.textContent = when.toTimeString().slice(0, 5);
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = item.from;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = item.text;
    li.append(time, from, text);
  }
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

function renderLog() {
  const c = state.convs.get(state.current);
  $("log").replaceChildren();
  $("room-title").textContent = c.title;
  $("target").textContent = isRoom(c) ? c.title : c.title + " (private)";
  c.items.forEach(appendToLog);
}

export function renderRooms() {
  const list = $("rooms");
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.key : undefined;
  list.replaceChildren();
  for (const c of state.convs.values()) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = c.key;
    button.textContent = (isRoom(c) ? "#" : "@") + c.title;
    if (c.key === state.current) button.setAttribute("aria-current", "true");
    if (c.unread) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(c.unread);
      badge.setAttribute("aria-label", c.unread + " unread");
      button.append(" ", badge);
    }
    button.addEventListener("click", () => select(c.key));
    li.append(button);
    list.append(li);
    if (c.key === focused) button.focus();
  }
}

export function select(key) {
  if (!state.convs.has(key)) return;
  state.current = key;
  state.convs.get(key).unread = 0;
  renderRooms();
  renderLog();
}

export function setStatus(text) { $("status").textContent = text; }

export function showChat(on) {
  $("chat").hidden = !on;
  $("login").hidden = on;
  if (on) $("message").focus(); else $("name").focus();
}
