// chatd's web client: chat/1 over a WebSocket, one JSON message per text frame.
// No framework, no build step. Text from the server is only ever inserted as
// text (textContent), never as HTML. Reconnects with jittered exponential
// backoff and asks `history` `since` the last id it has, as long as the
// server's epoch is the same (docs/protocol.md, "Epoch").
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LOBBY = "lobby";
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
  // Backoff: 0.5 s doubling up to 30 s, each wait drawn between half and all of it.
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  // bye reasons after which reconnecting would be wrong.
  const FINAL = new Set(["quit", "replaced"]);

  const state = {
    ws: null,
    name: null,          // our name once welcomed
    password: null,      // kept in memory only, to log in again after a restart
    registerWanted: false,  // register the name (with `password`) once welcomed
    token: null,         // welcome.token: takes the name back after a dropped connection
    epoch: null,
    limits: {},
    welcomed: false,     // welcomed on the present connection
    everWelcomed: false,
    stopped: false,      // no reconnect (quit, replaced, or the user is choosing a name)
    attempt: 0,
    retryTimer: null,
    pingTimer: null,
    convs: new Map(),    // key ("#room" or "@user") -> conversation
    current: "#" + LOBBY,
    pendingJoin: null,   // the room a /join asked for: shown once joined
  };

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
  const roomConv = (room) => conv("#" + room.toLowerCase(), room);
  const dmConv = (user) => conv("@" + user.toLowerCase(), user);
  const isRoom = (c) => c.key.startsWith("#");

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

  const system = (text, c = state.convs.get(state.current) || roomConv(LOBBY)) =>
    addItem(c, { system: true, text });

  function addMessage(msg) {
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

  function renderRooms() {
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

  function select(key) {
    if (!state.convs.has(key)) return;
    state.current = key;
    state.convs.get(key).unread = 0;
    renderRooms();
    renderLog();
  }

  function setStatus(text) { $("status").textContent = text; }

  function showChat(on) {
    $("chat").hidden = !on;
    $("login").hidden = on;
    if (on) $("message").focus(); else $("name").focus();
  }

  // -------------------------------------------------------------- connection

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(message));
      return true;
    }
    system("Not connected: not sent.");
    return false;
  }

  function connect() {
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

  // ---------------------------------------------------------------- commands

  function command(line) {
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

  // ------------------------------------------------------------------ events

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!name) return;
    $("login-error").textContent = "";
    state.name = name;
    state.password = $("password").value || null;
    state.registerWanted = $("register").checked;
    if (state.registerWanted && !state.password) {
      $("login-error").textContent = "Registering needs a password.";
      return;
    }
    $("password").value = "";
    state.token = null;
    state.stopped = false;
    state.everWelcomed = false;
    state.epoch = null;
    state.convs.clear();
    connect();
  });

  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message");
    const line = input.value;
    if (line.trim() && command(line)) input.value = "";
  });

  document.addEventListener("keydown", (event) => {
    if (!event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const keys = [...state.convs.keys()];
    const at = keys.indexOf(state.current);
    const next = keys[(at + (event.key === "ArrowUp" ? keys.length - 1 : 1)) % keys.length];
    if (next) { event.preventDefault(); select(next); }
  });
})();
