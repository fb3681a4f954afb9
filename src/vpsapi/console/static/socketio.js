// A minimal Socket.IO client (Engine.IO v4 over WebSocket only): connect with auth, receive
// events, emit with acknowledgements, answer pings, reconnect. Enough for live dashboards
// without vendoring the full client library.
import * as api from "./api.js";

const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];

export class SocketIO {
  /** `path`: where the server mounts Socket.IO (ours: `/ws/`). */
  constructor(path, { onEvent = () => {}, onState = () => {} } = {}) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.acks = new Map();
    this.nextAck = 1;
    this.closed = false;
    this.attempt = 0;
    this.connected = false;
    this.onConnect = [];
  }

  connect() {
    this.onState("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${this.path}?EIO=4&transport=websocket`);
    this.ws = ws;
    ws.addEventListener("message", (event) => this.receive(String(event.data)));
    ws.addEventListener("close", () => {
      this.connected = false;
      if (this.closed) return;
      const delay = RECONNECT_MS[Math.min(this.attempt++, RECONNECT_MS.length - 1)];
      this.onState("reconnecting", delay);
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  receive(text) {
    const kind = text[0];
    if (kind === "0") {
      // Engine.IO open: join the default namespace, authenticated like the REST API.
      this.ws.send(`40${JSON.stringify({ token: api.accessToken(), source: "console" })}`);
    } else if (kind === "2") {
      this.ws.send("3");
    } else if (kind === "4") {
      this.packet(text.slice(1));
    }
  }

  packet(text) {
    const type = text[0];
    const match = /^(\d*)(.*)$/s.exec(text.slice(1));
    const ackId = match[1];
    const payload = match[2] ? JSON.parse(match[2]) : null;
    if (type === "0") {
      this.connected = true;
      this.attempt = 0;
      this.onState("connected");
      for (const callback of this.onConnect) callback();
    } else if (type === "4") {
      this.closed = true; // refused (e.g. signed out): retrying would not help
      this.onState("refused", payload?.message);
      this.ws.close();
    } else if (type === "2" && Array.isArray(payload)) {
      this.onEvent(payload[0], payload[1]);
    } else if (type === "3" && ackId) {
      this.acks.get(Number(ackId))?.(Array.isArray(payload) ? payload[0] : payload);
      this.acks.delete(Number(ackId));
    }
  }

  /** Emit an event; resolves with the server's acknowledgement. */
  emit(event, data) {
    const id = this.nextAck++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.ws.send(`42${id}${JSON.stringify([event, data])}`);
    });
  }

  /** Run `callback` on every (re)connection, e.g. to subscribe to rooms again. */
  whenConnected(callback) {
    this.onConnect.push(callback);
    if (this.connected) callback();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close();
  }
}
