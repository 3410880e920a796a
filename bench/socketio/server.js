// The Socket.IO 4 peer of `bench compare`: the same semantics as the
// engine's fan-out scenario, written the way a chat app on Socket.IO would.
// - auth by token in the CONNECT packet: "<user id>.<hex HMAC-SHA256 of the id>"
// - a room per chat, entered with `join` (acknowledged)
// - `message.send` {chat_id, content, client_message_id} with an ack
//   {id, seq}: a per-chat seq, dedupe by (sender, client_message_id), and
//   `message.new` to the whole room
// Messages are kept in memory only (no database), which favours the peer.
// With WORKERS > 1 it runs as a node:cluster of that many workers sharing
// the port (the primary hands out connections in turn; WebSocket-only
// transport needs no sticky sessions), rooms spanning workers through
// @socket.io/cluster-adapter, as the Socket.IO documentation sets a
// multi-core server up. Seqs and dedupe then hold per worker: a chat's
// senders on two workers could be given the same seq (the bench's senders
// of a chat keep to one connection each, so it does not show).
// ws uses bufferutil and utf-8-validate, installed beside it.
// Environment: PORT (0 picks one), TOKEN_SECRET, WORKERS (default 1).
// Prints {"port": N} when every worker listens.
"use strict";
const cluster = require("node:cluster");
const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { createAdapter, setupPrimary } = require("@socket.io/cluster-adapter");

const workers = Number(process.env.WORKERS || 1);
if (workers > 1 && cluster.isPrimary) {
  setupPrimary();
  cluster.setupPrimary({ serialization: "advanced" });
  let listening = 0;
  cluster.on("listening", (_worker, address) => {
    listening += 1;
    if (listening === workers) console.log(JSON.stringify({ port: address.port }));
  });
  cluster.on("exit", (worker, code) => {
    console.error(`worker ${worker.process.pid} exited with ${code}`);
    process.exit(1);
  });
  process.on("SIGTERM", () => {
    cluster.removeAllListeners("exit");
    for (const worker of Object.values(cluster.workers)) worker.process.kill("SIGTERM");
    process.exit(0);
  });
  for (let i = 0; i < workers; i += 1) cluster.fork();
  return;
}
// A worker whose primary is gone (even killed outright) goes too.
if (cluster.isWorker) process.on("disconnect", () => process.exit(0));

const secret = process.env.TOKEN_SECRET || "bench-secret";
const DEDUPE_WINDOW = 100000;

function userOf(token) {
  if (typeof token !== "string") return null;
  const [id, mac] = token.split(".");
  const expected = crypto.createHmac("sha256", secret).update(id).digest("hex");
  if (!mac || mac.length !== expected.length) return null;
  if (!crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(expected))) return null;
  const user = Number(id);
  return Number.isSafeInteger(user) ? user : null;
}

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });
if (cluster.isWorker) io.adapter(createAdapter());
const seqs = new Map();
const seen = new Map();
let nextId = 1;

io.use((socket, next) => {
  const user = userOf(socket.handshake.auth && socket.handshake.auth.token);
  if (user === null) return next(new Error("unauthorized"));
  socket.data.user = user;
  socket.data.chats = new Set();
  next();
});

io.on("connection", (socket) => {
  socket.on("join", (request, ack) => {
    if (typeof ack !== "function") return;
    const chat = request && request.chat_id;
    if (!Number.isSafeInteger(chat)) return ack({ error: "chat_id must be an integer" });
    socket.data.chats.add(chat);
    socket.join(`chat:${chat}`);
    ack({ ok: true });
  });
  socket.on("message.send", (request, ack) => {
    if (typeof ack !== "function") return;
    const chat = request && request.chat_id;
    const content = request && request.content;
    if (!Number.isSafeInteger(chat) || typeof content !== "string") return ack({ error: "bad message" });
    if (!socket.data.chats.has(chat)) return ack({ error: "not a member" });
    const key = `${socket.data.user}:${request.client_message_id}`;
    const earlier = request.client_message_id !== undefined && seen.get(key);
    if (earlier) return ack(earlier);
    const seq = (seqs.get(chat) || 0) + 1;
    seqs.set(chat, seq);
    const message = {
      id: nextId++,
      chat_id: chat,
      seq,
      sender_id: socket.data.user,
      content,
      client_message_id: request.client_message_id,
      created_at: Date.now(),
    };
    seen.set(key, { id: message.id, seq });
    if (seen.size > DEDUPE_WINDOW) seen.delete(seen.keys().next().value);
    io.to(`chat:${chat}`).emit("message.new", message);
    ack({ id: message.id, seq });
  });
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  if (!cluster.isWorker) console.log(JSON.stringify({ port: server.address().port }));
});
// Nothing is kept: on SIGTERM the peer just exits.
process.on("SIGTERM", () => process.exit(0));
