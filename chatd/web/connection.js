// The WebSocket: hello (with the token or password), the server's frames, and
// reconnecting with jittered exponential backoff, asking `history` `since` the
// last id kept as long as the server's epoch is the same (docs/protocol.md,
// "Epoch").

import { $, LOBBY, state } from "./state.js";
import { addMessage, dmConv, isRoom, renderRooms, roomConv, select, setStatus, showChat,
         system } from "./conversations.js";

// Backoff: 0.5 s doubling up to 30 s, each wait drawn between half and all of it.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30000;
// bye reasons after which reconnecting would be wrong.
const FINAL = new Set(["quit", "replaced"]);

// -------------------------------------------------------------- connection

export function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
    return true;
  }
  system("Not connected: not sent.");
  return false;
}

export function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/chat`);
  state.ws = ws;
  state.welcomed = false;
  let lastBye = null;
  setStatus("Connecting…");
  ws.addEventListener("open", () => {
    const hello = { type: "hello", name: state.name };
    if (state.token) hello.token = state.token;
    else if (state.password && !state.registerWanted) hello.password = state.password;
    ws.send(JSON.stringify(hello));
  });
  ws.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === "bye") lastBye = message.reason;
    handle(message);
  });
  ws.addEventListener("close", (event) => {
    clearInterval(state.pingTimer);
    if (state.ws !== ws) return;
    state.ws = null;
    const reason = lastBye || event.reason || "connection lost";
    if (FINAL.has(reason) || state.stopped) {
      setStatus(`Disconnected (${reason}).`);
      if (!state.everWelcomed || reason === "quit") showChat(false);
      return;
    }
    if (!state.everWelcomed) {
      setStatus(`Could not connect (${reason}).`);
      showChat(false);
      return;
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempt);
    const wait = ceiling / 2 + Math.random() * ceiling / 2;
    state.attempt++;
    setStatus(`Disconnected (${reason}); reconnecting in ${(wait / 1000).toFixed(1)} s…`);
    state.retryTimer = setTimeout(connect, wait);
  });
}

function welcome(message) {
  const sameEpoch = state.epoch === message.epoch;
  const first = !state.everWelcomed;
  state.welcomed = state.everWelcomed = true;
  state.attempt = 0;
  state.name = message.name;
  state.token = message.token;
  state.limits = message.limits || {};
  state.epoch = message.epoch;
  setStatus(`Connected as ${message.name}` + (message.account ? " (account)" : ""));
  showChat(true);
  const idle = Number(state.limits.idle_timeout) || 300;
  state.pingTimer = setInterval(() => send({ type: "ping" }),
                                Math.max(5, Math.min(60, idle / 3)) * 1000);
  if (first) {
    roomConv(LOBBY);
    select("#" + LOBBY);
    system(`Welcome, ${message.name}. ${message.user_count} in the lobby. /help lists the commands.`);
    const limits = state.limits;
    system(`The server's rules: messages of up to ${limits.max_text} characters` +
           (Number(limits.rate) > 0 ? `, ${limits.rate} a second (${limits.burst} at once)` : "") +
           `, idle connections closed after ${idle} s.`);
  } else if (!sameEpoch) {
    // Ids started over: the ids we kept mean nothing now.
    for (const c of state.convs.values()) { c.ids.clear(); c.lastId = 0; }
    system("The server started a new history: ids start over.");
  } else {
    system("Reconnected.");
  }
  for (const c of state.convs.values()) {
    if (!isRoom(c)) catchUp(c);
    else if (c.title.toLowerCase() === LOBBY) catchUp(c);
    else send({ type: "join", room: c.title });  // its history follows `joined`
  }
  if (state.registerWanted) {
    state.registerWanted = false;
    if (state.limits.accounts === "open") send({ type: "register", password: state.password });
    else system("This server does not take registrations; you are a guest.");
  }
  for (const pair of message.conversations || []) {
    const c = dmConv(pair.with);
    if (pair.last_id > c.lastId) catchUp(c);
  }
}

function catchUp(c) {
  const request = { type: "history" };
  if (isRoom(c)) request.room = c.title; else request.with = c.title;
  if (c.lastId) request.since = c.lastId;
  send(request);
}

function handle(message) {
  switch (message.type) {
    case "welcome": welcome(message); break;
    case "msg": addMessage(message); break;
    case "history": {
      (message.messages || []).forEach(addMessage);
      if (message.more) {
        const c = message.room !== undefined ? roomConv(message.room) : dmConv(message.with);
        catchUp(c);
      }
      break;
    }
    case "joined": {
      const c = roomConv(message.room);
      if (message.name.toLowerCase() === state.name.toLowerCase()) {
        catchUp(c);
        if (state.pendingJoin === c.key) { state.pendingJoin = null; select(c.key); }
      } else {
        system(`${message.name} joined`, c);
      }
      break;
    }
    case "left": {
      const key = "#" + message.room.toLowerCase();
      if (message.name.toLowerCase() === state.name.toLowerCase()) {
        state.convs.delete(key);
        if (state.current === key) select("#" + LOBBY); else renderRooms();
      } else if (state.convs.has(key)) {
        system(`${message.name} left` + (message.reason ? ` (${message.reason})` : ""),
               state.convs.get(key));
      }
      break;
    }
    case "renamed":
      if (message.old.toLowerCase() === (state.name || "").toLowerCase()) {
        state.name = message.new;
        setStatus(`Connected as ${message.new}`);
      }
      system(`${message.old} is now ${message.new}`);
      break;
    case "users":
      system(`In ${message.room}: ${message.names.join(", ")}` + (message.more ? " …" : ""));
      break;
    case "rooms":
      system("Rooms: " + message.rooms.map((r) => `${r.name} (${r.users})`).join(", "));
      break;
    case "registered":
      system(`${message.name} is now an account.`);
      setStatus(`Connected as ${state.name} (account)`);
      break;
    case "password_changed": system("Password changed."); break;
    case "error": error(message); break;
    case "bye": system(`The server closed the connection: ${message.reason}.`); break;
    default: break;  // pong, and types this page does not know (forward compatibility)
  }
}

function error(message) {
  if (!state.welcomed) {
    if (message.code === "auth_required" && state.password && state.token) {
      // The server restarted: the token is gone, the password still logs in.
      state.token = null;
      send({ type: "hello", name: state.name, password: state.password });
      return;
    }
    // Not welcomed: the name (or password) was refused; choose again.
    state.stopped = true;
    $("login-error").textContent = message.message;
    if (state.ws) state.ws.close();
    showChat(false);
    return;
  }
  system(`Error (${message.code}): ${message.message}`);
}
