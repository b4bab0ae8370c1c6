// The web client's shared state and its one DOM helper (see client.js).

export const $ = (id) => document.getElementById(id);
export const LOBBY = "lobby";

export const state = {
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
