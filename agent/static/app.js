// Voxline demo page: a WebRTC call to the agent, with live captions, the agent's state,
// per-turn latency and level meters. Plain JavaScript, no build step.
//
// Signalling: POST /v1/webrtc/offer with the complete offer (ICE gathered first, no trickle).
// The data channel carries the JSON events of the native protocol (docs/protocol.md). On an
// interpreter (engine "translate") the page offers its two-party rooms: the offer names the
// room and the language the caller speaks there. With API keys on (server.auth), the page asks
// for one when the server answers 401 and sends it with every request (apiFetch). The Calls
// view (the call records) is calls.js.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  agent: $("agent"),
  voice: $("voice"),
  roomField: $("room-field"),
  room: $("room"),
  languageField: $("language-field"),
  language: $("language"),
  roomHint: $("room-hint"),
  keyField: $("key-field"),
  key: $("api-key"),
  keyHint: $("key-hint"),
  call: $("call"),
  error: $("error"),
  connection: $("connection"),
  state: $("agent-state"),
  latency: $("latency"),
  stages: $("latency-stages"),
  micLevel: $("mic-level"),
  agentLevel: $("agent-level"),
  captions: $("captions"),
  say: $("say"),
  typed: $("typed"),
  remote: $("remote-audio"),
};

const ENDED = {
  bye: "Call ended.",
  hangup: "Call ended.",
  agent: "The agent ended the call.",
  media_timeout: "The call ended: no audio reached the server from your microphone.",
  connect_timeout: "The call could not connect in time.",
  ice_failed: "The connection to the server was lost.",
  server_shutdown: "The server is shutting down; the call has ended.",
  internal: "The call ended because of a server error.",
  room_closed: "The other caller left; the room has closed.",
};
const QUIET_ENDS = ["bye", "hangup", "agent", "room_closed"];
const languageNames = window.Intl && Intl.DisplayNames
  ? new Intl.DisplayNames(["en"], { type: "language" }) : null;

function languageName(code) {
  try {
    return (languageNames && languageNames.of(code)) || code;
  } catch (ignored) {
    return code; // not a language tag
  }
}

let iceServers = [];
let interpreter = false; // the agent translates (dialogue engine "translate")
let call = null; // the current call, or null
let apiKey = ""; // what the caller typed into the API key field: in this tab's memory only

// -- the server's API key ---------------------------------------------------------------------

// fetch(), with the API key when one was given; a 401 shows the key field
async function apiFetch(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) askForKey();
  return response;
}

function askForKey() {
  ui.keyField.hidden = false;
  ui.keyHint.hidden = false;
}

// -- the pickers ------------------------------------------------------------------------------

async function loadOptions() {
  try {
    const response = await apiFetch("/v1/webrtc/config");
    if (response.status === 401) {
      showError("This server asks for an API key: enter it above.");
      return;
    }
    if (!response.ok) throw new Error(await problem(response));
    const options = await response.json();
    fill(ui.agent, options.agents, (a) => a.name, (a) => a.description);
    fill(ui.voice, options.voices, (v) => [v.name, v.language].filter(Boolean).join(" · "),
      (v) => v.description);
    iceServers = options.ice_servers || [];
    interpreter = options.agents.some((a) => a.engine === "translate");
    const languages = (options.rooms && options.rooms.languages) || [];
    fill(ui.language, languages.map((code) => ({ name: code })),
      (l) => `${languageName(l.name)} (${l.name})`, () => "");
    for (const element of [ui.roomField, ui.languageField, ui.roomHint]) {
      element.hidden = languages.length === 0;
    }
    ui.call.disabled = false;
  } catch (error) {
    showError(`The server could not be reached (${error.message}). Reload the page to try again.`);
  }
}

function fill(select, items, label, description) {
  select.replaceChildren(...items.map((item) => {
    const option = document.createElement("option");
    option.value = item.name;
    option.textContent = label(item);
    option.title = description(item) || "";
    return option;
  }));
}

async function problem(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return body.error.message;
  } catch (ignored) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

// -- the call ---------------------------------------------------------------------------------

async function startCall() {
  hideError();
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    showError("This browser cannot make the call: it needs WebRTC and microphone access " +
      "(use a current browser, over https or on localhost).");
    return;
  }
  setBusy(true, "Connecting…");
  const room = ui.roomField.hidden ? "" : ui.room.value.trim();
  if (room && !ui.room.checkValidity()) {
    showError("A room name is 1 to 64 letters, digits, dots, dashes or underscores.");
    ui.room.focus();
    return;
  }
  const joining = room ? { room, language: ui.language.value } : {};
  const current = {
    pc: null, channel: null, mic: null, audio: null, timers: [], ended: false,
    sessionId: null, agentText: new Map(),
    agentLabel: room ? "Other caller (translated)" : interpreter ? "Interpreter" : "Agent",
  };
  call = current;
  try {
    current.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (error) {
    teardown(current);
    showError(microphoneProblem(error));
    return;
  }
  try {
    const pc = new RTCPeerConnection({ iceServers });
    current.pc = pc;
    for (const track of current.mic.getAudioTracks()) pc.addTrack(track, current.mic);
    const channel = pc.createDataChannel("events");
    current.channel = channel;
    channel.onmessage = (message) => onEvent(current, JSON.parse(message.data));
    pc.ontrack = (event) => onRemoteTrack(current, event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => onConnectionState(current);
    current.audio = new AudioContext();
    meter(current, current.mic, ui.micLevel);

    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const response = await apiFetch("/v1/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        type: "offer", sdp: pc.localDescription.sdp, agent: ui.agent.value, voice: ui.voice.value,
        ...joining,
      }),
    });
    if (!response.ok) throw new Error(await problem(response));
    const answer = await response.json();
    current.sessionId = answer.session_id;
    if (current.ended) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (error) {
    teardown(current);
    showError(`The call could not start: ${error.message}`);
  }
}

function gathered(pc, limitMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, limitMs); // no STUN by default: host candidates come at once
  });
}

function microphoneProblem(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this page, then call again.";
    case "NotFoundError":
      return "No microphone was found. Connect one, then call again.";
    case "NotReadableError":
      return "The microphone could not be opened: another application may be using it.";
    default:
      return `The microphone could not be used (${error && error.message}).`;
  }
}

function onConnectionState(current) {
  const state = current.pc.connectionState;
  setConnection({ new: "connecting…", connecting: "connecting…", connected: "connected",
    disconnected: "interrupted, reconnecting…", failed: "failed", closed: "closed" }[state] || state);
  if (state === "connected") {
    setState("listening");
    setBusy(true, "Hang up");
    ui.typed.disabled = false;
    ui.say.querySelector("button").disabled = false;
  } else if (state === "failed") {
    teardown(current);
    showError("The connection to the server failed: no network path between this browser and " +
      "the server was found. A TURN server may be needed (server.webrtc.ice_servers).");
  }
}

function onRemoteTrack(current, stream) {
  // Chromium routes remote WebRTC audio to WebAudio only while an <audio> element plays it.
  ui.remote.srcObject = stream;
  ui.remote.play().catch(() => {
    showError("The browser blocked the agent's audio. Click anywhere on the page to hear it.");
    document.addEventListener("click", () => { ui.remote.play(); hideError(); }, { once: true });
  });
  meter(current, stream, ui.agentLevel);
}

function meter(current, stream, element) {
  const context = current.audio;
  if (!context) return;
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  current.timers.push(setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    element.value = Math.min(1, rms * 4);
    const peak = Number(element.dataset.peak || 0);
    if (rms > peak) element.dataset.peak = rms.toFixed(4);
  }, 100));
  if (context.state === "suspended") context.resume();
}

function hangUp() {
  const current = call;
  if (!current) return;
  if (current.channel && current.channel.readyState === "open") {
    current.channel.send(JSON.stringify({ type: "bye", reason: "user hung up" }));
    current.timers.push(setTimeout(() => teardown(current), 1000)); // or on session.ended
    setBusy(true, "Hanging up…");
    ui.call.disabled = true;
  } else {
    teardown(current);
  }
}

function teardown(current, message) {
  if (current.ended) return;
  current.ended = true;
  for (const timer of current.timers) { clearInterval(timer); clearTimeout(timer); }
  if (current.pc) current.pc.close();
  if (current.mic) for (const track of current.mic.getTracks()) track.stop();
  if (current.audio) current.audio.close();
  ui.remote.srcObject = null;
  ui.micLevel.value = 0;
  ui.agentLevel.value = 0;
  if (call === current) call = null;
  setBusy(false, "Call");
  setConnection(message || "not connected");
  setState("idle");
  ui.typed.disabled = true;
  ui.say.querySelector("button").disabled = true;
}

// -- events from the server -------------------------------------------------------------------

function onEvent(current, event) {
  switch (event.type) {
    case "speech.started":
      setState("listening");
      break;
    case "transcript.partial":
      caption(`user-${event.utterance}`, "user", "You", event.text, false);
      break;
    case "transcript.final":
      caption(`user-${event.utterance}`, "user", "You", event.text, true, event.language);
      setState("thinking");
      break;
    case "agent.text": {
      const text = (current.agentText.get(event.generation) || "") + event.delta;
      current.agentText.set(event.generation, text);
      caption(`agent-${event.generation}`, "agent", current.agentLabel, text, false);
      break;
    }
    case "audio.start":
      setState("speaking");
      break;
    case "audio.end":
      if (!event.interrupted) {
        const text = current.agentText.get(event.generation) || "";
        caption(`agent-${event.generation}`, "agent", current.agentLabel, text, true);
      }
      setState("listening");
      break;
    case "interrupted": {
      const item = caption(`agent-${event.generation}`, "agent", current.agentLabel, event.heard_text, true);
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = " (interrupted)";
      item.append(note);
      setState("listening");
      break;
    }
    case "turn.latency":
      showLatency(event.latency_ms);
      break;
    case "error":
      if (event.code.startsWith("ignored.")) setState("listening");
      else showError(`The agent reported a problem: ${event.message}`);
      break;
    case "session.ended":
      teardown(current, ENDED[event.reason] || `Call ended (${event.reason}).`);
      if (!QUIET_ENDS.includes(event.reason)) showError(ENDED[event.reason] ||
        `The call ended: ${event.reason}.`);
      break;
    default:
      break; // session.started and events this page does not show
  }
}

// language: the one heard (transcript.final), shown as a tag ("ES") and set on the text
function caption(key, who, label, text, final, language) {
  let item = ui.captions.querySelector(`[data-key="${key}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.key = key;
    item.className = `caption ${who}`;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = label;
    const body = document.createElement("span");
    body.className = "text";
    item.append(name, body);
    ui.captions.append(item);
  }
  item.querySelector(".text").textContent = text;
  if (language && !item.dataset.language) {
    item.dataset.language = language;
    item.querySelector(".text").lang = language;
    const tag = document.createElement("abbr");
    tag.className = "lang";
    tag.title = languageName(language);
    tag.textContent = language.toUpperCase();
    item.querySelector(".who").append(tag);
  }
  for (const note of item.querySelectorAll(".note")) note.remove();
  item.classList.toggle("partial", !final);
  item.dataset.final = String(final);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function showLatency(stages) {
  const total = stages.total;
  ui.latency.textContent = total === undefined ? "measured" : `${Math.round(total)} ms`;
  ui.stages.replaceChildren(...Object.entries(stages).map(([name, ms]) => {
    const row = document.createElement("tr");
    const stage = document.createElement("td");
    stage.textContent = name.replaceAll("_", " ").replace("->", " → ");
    const value = document.createElement("td");
    value.textContent = Math.round(ms);
    row.append(stage, value);
    return row;
  }));
}

// -- the page ---------------------------------------------------------------------------------

function setBusy(inCall, label) {
  ui.call.textContent = label;
  ui.call.classList.toggle("in-call", inCall);
  ui.call.disabled = false;
  ui.agent.disabled = inCall;
  ui.voice.disabled = inCall;
  ui.room.disabled = inCall;
  ui.language.disabled = inCall;
}

function setConnection(text) { ui.connection.textContent = text; }

function setState(state) {
  ui.state.dataset.state = state;
  ui.state.textContent = state;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

ui.call.addEventListener("click", () => (call ? hangUp() : startCall()));
ui.key.addEventListener("change", () => {
  apiKey = ui.key.value.trim();
  if (!call && ui.call.disabled) { // the options never came: try again with the key
    hideError();
    loadOptions();
  }
});
ui.say.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.typed.value.trim();
  if (!text || !call || !call.channel || call.channel.readyState !== "open") return;
  call.channel.send(JSON.stringify({ type: "text", text }));
  caption(`typed-${Date.now()}`, "user", "You (typed)", text, true);
  ui.typed.value = "";
});
window.addEventListener("pagehide", () => {
  if (!call) return;
  if (call.channel && call.channel.readyState === "open") {
    call.channel.send(JSON.stringify({ type: "bye", reason: "page closed" }));
  }
  teardown(call);
});
loadOptions();
