// chatd's web client: chat/1 over a WebSocket, one JSON message per text frame.
// No framework, no build step: ES modules served as they are. This one wires
// the page's forms and keys; state.js holds what the others share,
// conversations.js keeps and renders the conversations, connection.js speaks
// chat/1 over the WebSocket, commands.js reads the message field.

import { $, state } from "./state.js";
import { select } from "./conversations.js";
import { connect } from "./connection.js";
import { command } from "./commands.js";

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
