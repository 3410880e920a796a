// Switchboard demo client: REST for history and setup, one WebSocket for
// everything live, WebRTC for calls. State is exposed as window.sb.
"use strict";

const $ = (id) => document.getElementById(id);
const sb = (window.sb = {
  token: sessionStorage.getItem("token"),
  me: null,
  chats: new Map(), // id -> chat view (with peer for private chats)
  current: null, // chat id
  lastSeq: new Map(), // chat id -> highest seq seen
  online: new Set(),
  ws: null,
  retry: 0,
  pc: null,
  call: null, // {id, peer, type, incoming}
  pendingIce: [],
});

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "content-type": "application/json", ...(sb.token ? { authorization: `Bearer ${sb.token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = await response.json();
  if (reply.code !== 200) throw new Error(reply.error || reply.message);
  return reply.data;
}

// ---- login ----
async function enter(path) {
  $("login-error").textContent = "";
  const body = { phone: $("phone").value.trim(), password: $("password").value };
  if (path.endsWith("register") && $("username").value.trim()) body.username = $("username").value.trim();
  try {
    const session = await api("POST", path, body);
    sb.token = session.access_token;
    sessionStorage.setItem("token", sb.token);
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}
$("login-button").onclick = () => enter("/api/auth/login");
$("register-button").onclick = () => enter("/api/auth/register");

async function start() {
  sb.me = await api("GET", "/api/users/me");
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = sb.me.nickname || sb.me.username;
  await loadChats();
  connect();
}

// ---- chats ----
async function loadChats() {
  const list = await api("GET", "/api/chats?limit=100");
  for (const chat of list.chats) {
    const known = sb.chats.get(chat.id) || {};
    sb.chats.set(chat.id, { ...known, ...chat });
    if (chat.type === "private" && known.peer === undefined) {
      const detail = await api("GET", `/api/chats/${chat.id}`);
      sb.chats.get(chat.id).peer = detail.members.find((m) => m.id !== sb.me.id)?.id;
    }
    if (!sb.lastSeq.has(chat.id)) sb.lastSeq.set(chat.id, chat.last_seq);
  }
  renderChats();
  // New peers: ask who of them is online.
  presenceQuery();
}

function renderChats() {
  const list = $("chats");
  list.replaceChildren();
  for (const chat of sb.chats.values()) {
    const item = document.createElement("li");
    item.dataset.chat = chat.id;
    item.className = chat.id === sb.current ? "active" : "";
    const dot = document.createElement("span");
    dot.className = "dot" + (chat.peer && sb.online.has(chat.peer) ? " online" : "");
    const name = document.createElement("span");
    name.textContent = chat.name || `chat ${chat.id}`;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = chat.unread_count ? String(chat.unread_count) : "";
    item.append(dot, name, badge);
    item.onclick = () => openChat(chat.id);
    list.append(item);
  }
  const chat = sb.chats.get(sb.current);
  $("peer-dot").className = "dot" + (chat?.peer && sb.online.has(chat.peer) ? " online" : "");
}

$("new-chat-button").onclick = async () => {
  const phone = $("new-chat-phone").value.trim();
  if (!phone) return;
  let contactId;
  try {
    contactId = (await api("POST", "/api/contacts", { phone })).contact_id;
  } catch (error) {
    const contacts = await api("GET", "/api/contacts");
    contactId = contacts.contacts.find((c) => c.contact && error.message)?.contact_id;
    if (!contactId) return alert(error.message);
  }
  const chat = await api("POST", "/api/chats", { type: "private", members: [contactId] });
  await loadChats();
  openChat(chat.id);
};

async function openChat(id) {
  sb.current = id;
  const chat = sb.chats.get(id);
  $("chat-title").textContent = chat.name;
  for (const control of ["text", "send", "audio-call", "video-call"]) $(control).disabled = false;
  if (chat.type !== "private") $("audio-call").disabled = $("video-call").disabled = true;
  const page = await api("GET", `/api/chats/${id}/messages?limit=50`);
  $("messages").replaceChildren();
  for (const message of page.messages) showMessage(message);
  markRead(page.messages.at(-1));
  renderChats();
}

function tickFor(message) {
  return message.is_read ? "✓✓" : "✓";
}

function showMessage(message) {
  if (message.chat_id !== sb.current || document.querySelector(`[data-id="${message.id}"]`)) return;
  const item = document.createElement("li");
  item.dataset.id = message.id;
  item.dataset.seq = message.seq;
  const mine = message.sender_id === sb.me.id;
  item.className = message.type === "system" ? "system" : mine ? "mine" : "";
  item.append(document.createTextNode(message.type === "system" ? describeSystem(message.content) : message.content));
  if (mine && message.type !== "system") {
    const tick = document.createElement("span");
    tick.className = "tick" + (message.is_read ? " read" : "");
    tick.textContent = tickFor(message);
    item.append(tick);
  }
  $("messages").append(item);
  item.scrollIntoView();
}

function describeSystem(content) {
  try {
    const call = JSON.parse(content);
    if (call.event === "call") return `${call.call_type} call: ${call.status}${call.duration ? ` (${call.duration}s)` : ""}`;
  } catch (_) {}
  return content;
}

function markRead(message) {
  if (!message || message.sender_id === sb.me.id) return;
  send("message.read", { chat_id: message.chat_id, message_id: message.id });
  const chat = sb.chats.get(message.chat_id);
  if (chat) chat.unread_count = 0;
}

// ---- sending and typing ----
let typingSent = 0;
$("text").oninput = () => {
  if (Date.now() - typingSent > 2000) {
    typingSent = Date.now();
    send("typing", { chat_id: sb.current, is_typing: true });
  }
};
$("composer").onsubmit = (event) => {
  event.preventDefault();
  const content = $("text").value.trim();
  if (!content) return;
  $("text").value = "";
  typingSent = 0;
  send("typing", { chat_id: sb.current, is_typing: false });
  send("message.send", { chat_id: sb.current, content, client_message_id: crypto.randomUUID() });
};

// ---- the live connection ----
let commandId = 0;
function send(type, data) {
  if (sb.ws?.readyState !== WebSocket.OPEN) return null;
  const id = `c${++commandId}`;
  sb.ws.send(JSON.stringify({ type, id, data }));
  return id;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(sb.token)}`);
  sb.ws = ws;
  ws.onmessage = (frame) => onEvent(JSON.parse(frame.data));
  ws.onopen = () => {
    sb.retry = 0;
    $("connection").className = "dot online";
    // Catch up on everything missed while away.
    for (const [chat, seq] of sb.lastSeq) send("sync", { chat_id: chat, after_seq: seq });
    presenceQuery();
  };
  ws.onclose = () => {
    $("connection").className = "dot";
    if (sb.call) endCall("disconnected", false);
    const delay = Math.min(30000, 500 * 2 ** sb.retry++);
    setTimeout(connect, delay);
  };
}
setInterval(() => send("ping", {}), 25000);

function presenceQuery() {
  const peers = [...sb.chats.values()].map((c) => c.peer).filter(Boolean);
  if (peers.length) send("presence.query", { user_ids: peers });
}

const typingTimers = new Map();
async function onEvent(event) {
  const data = event.data;
  switch (event.type) {
    case "message.new":
    case "message.ack": {
      const message = event.type === "message.ack" ? data.message : data;
      if (!sb.chats.has(message.chat_id)) await loadChats();
      const last = sb.lastSeq.get(message.chat_id) ?? 0;
      if (message.seq > last + 1) send("sync", { chat_id: message.chat_id, after_seq: last });
      if (message.seq > last) sb.lastSeq.set(message.chat_id, message.seq);
      if (message.chat_id === sb.current) {
        showMessage(message);
        if (document.hasFocus() || message.sender_id !== sb.me.id) markRead(message);
      } else if (message.sender_id !== sb.me.id && event.type === "message.new") {
        const chat = sb.chats.get(message.chat_id);
        chat.unread_count = (chat.unread_count || 0) + 1;
      }
      if (message.sender_id !== sb.me.id) showTyping(message.chat_id, false);
      renderChats();
      break;
    }
    case "sync.batch":
      for (const message of data.messages) {
        if (message.seq > (sb.lastSeq.get(data.chat_id) ?? 0)) sb.lastSeq.set(data.chat_id, message.seq);
        showMessage(message);
      }
      if (data.has_more) send("sync", { chat_id: data.chat_id, after_seq: sb.lastSeq.get(data.chat_id) });
      break;
    case "message.status":
      if (data.status === "read" && data.user_id !== sb.me.id && data.chat_id === sb.current) {
        for (const item of document.querySelectorAll("#messages li.mine")) {
          if (Number(item.dataset.seq) <= data.seq) {
            const tick = item.querySelector(".tick");
            tick.textContent = "✓✓";
            tick.className = "tick read";
          }
        }
      }
      break;
    case "typing":
      showTyping(data.chat_id, data.is_typing);
      break;
    case "presence":
      data.is_online ? sb.online.add(data.user_id) : sb.online.delete(data.user_id);
      renderChats();
      break;
    case "presence.state":
      for (const user of data.users) user.is_online ? sb.online.add(user.user_id) : sb.online.delete(user.user_id);
      renderChats();
      break;
    case "chat.member_added":
    case "chat.updated":
      loadChats();
      break;
    case "call.ringing":
      if (sb.call) sb.call.id = data.call_id;
      break;
    case "call.offer":
      incomingCall(data);
      break;
    case "call.answer":
      await sb.pc?.setRemoteDescription({ type: "answer", sdp: data.sdp });
      flushIce();
      $("call-status").textContent = "connecting…";
      break;
    case "call.ice":
      if (sb.pc?.remoteDescription) await sb.pc.addIceCandidate(data.candidate);
      else sb.pendingIce.push(data.candidate);
      break;
    case "call.end":
      if (sb.call?.id === data.call_id) endCall(data.reason, false);
      break;
  }
}

function showTyping(chatId, on) {
  if (chatId !== sb.current) return;
  $("typing").hidden = !on;
  clearTimeout(typingTimers.get(chatId));
  // The server ends typing after 6 s anyway; don't trust a lost "false".
  if (on) typingTimers.set(chatId, setTimeout(() => ($("typing").hidden = true), 7000));
}

// ---- calls ----
async function peerConnection() {
  let iceServers = [];
  try {
    iceServers = (await api("GET", "/api/calls/ice-servers")).ice_servers;
  } catch (_) {}
  const pc = new RTCPeerConnection({ iceServers });
  sb.pc = pc;
  sb.pendingIce = [];
  pc.onicecandidate = (event) => {
    if (event.candidate && sb.call) send("call.ice", { call_id: sb.call.id, candidate: event.candidate.toJSON() });
  };
  pc.ontrack = (event) => ($("remote-video").srcObject = event.streams[0]);
  pc.onconnectionstatechange = () => {
    $("call-status").textContent = pc.connectionState;
    if (pc.connectionState === "failed" && sb.call) endCall("failed", true);
  };
  return pc;
}

async function media(type) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: type === "video" });
  $("local-video").srcObject = stream;
  return stream;
}

function showCall(status, incoming) {
  $("call").hidden = false;
  $("call-status").textContent = status;
  $("accept-call").hidden = $("reject-call").hidden = !incoming;
  $("hangup").hidden = incoming;
}

async function startCall(type) {
  const chat = sb.chats.get(sb.current);
  if (!chat?.peer || sb.call) return;
  const id = `call_${Date.now()}_${Math.random().toString(36).slice(2, 10)}`;
  sb.call = { id, peer: chat.peer, type, incoming: false };
  showCall("ringing…", false);
  const pc = await peerConnection();
  for (const track of (await media(type)).getTracks()) pc.addTrack(track, $("local-video").srcObject);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  send("call.offer", { to_user_id: chat.peer, call_type: type, sdp: offer.sdp, call_id: id });
}
$("audio-call").onclick = () => startCall("audio");
$("video-call").onclick = () => startCall("video");

function incomingCall(offer) {
  if (sb.call) return send("call.end", { call_id: offer.call_id, reason: "busy" });
  sb.call = { id: offer.call_id, peer: offer.from_user_id, type: offer.call_type, incoming: true, sdp: offer.sdp };
  showCall(`incoming ${offer.call_type} call`, true);
}

$("accept-call").onclick = async () => {
  const call = sb.call;
  showCall("connecting…", false);
  const pc = await peerConnection();
  await pc.setRemoteDescription({ type: "offer", sdp: call.sdp });
  for (const track of (await media(call.type)).getTracks()) pc.addTrack(track, $("local-video").srcObject);
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  send("call.answer", { call_id: call.id, sdp: answer.sdp });
  flushIce();
};
$("reject-call").onclick = () => endCall("rejected", true);
$("hangup").onclick = () => endCall("user_hangup", true);

function flushIce() {
  for (const candidate of sb.pendingIce.splice(0)) sb.pc?.addIceCandidate(candidate);
}

function endCall(reason, tellPeer) {
  if (tellPeer && sb.call) send("call.end", { call_id: sb.call.id, reason });
  sb.lastCallEnd = reason;
  sb.pc?.close();
  for (const video of [$("local-video"), $("remote-video")]) {
    video.srcObject?.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
  }
  sb.call = null;
  $("call").hidden = true;
}

if (sb.token) start().catch(() => sessionStorage.removeItem("token"));
