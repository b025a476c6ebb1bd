// Voxline demo page: the Calls view. The calls this server kept a record of (GET /v1/calls),
// and one call's transcript (both sides, timed, interruptions marked), its latency per turn as
// a chart (plain SVG: one stacked bar per answered turn, a segment per stage of the record's
// latency_ms) and a player for its recording (GET /v1/calls/{id}/recording) when it has one.
// Requests go through app.js's apiFetch (the API key, when the server asks for one).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const view = {
    load: $("calls-load"),
    error: $("calls-error"),
    list: $("calls-list"),
    detail: $("call-detail"),
    title: $("call-title"),
    facts: $("call-facts"),
    playerBox: $("call-player"),
    player: $("call-recording"),
    chart: $("call-chart"),
    transcript: $("call-transcript"),
  };
  const SVG = "http://www.w3.org/2000/svg";

  // The stages of a turn's latency, by the point each ends at (the record's keys are
  // "speech_end->asr_final", ...): a colour each, in the order they happen
  const STAGES = {
    asr_final: { colour: "#1f77b4", name: "ASR final" },
    end_of_turn: { colour: "#ff7f0e", name: "end of turn" },
    first_text: { colour: "#2ca02c", name: "first token" },
    first_audio: { colour: "#d62728", name: "first audio" },
    audio_out: { colour: "#9467bd", name: "audio out" },
  };
  const OTHER = { colour: "#8c8c8c", name: "other" };
  const POINTS = { speech_end: "speech end", ...Object.fromEntries(
    Object.entries(STAGES).map(([key, stage]) => [key, stage.name])) };

  let recordingUrl = null; // the object URL the player plays, freed when another call shows

  async function getJson(path) {
    const response = await apiFetch(path);
    if (response.status === 401) {
      $("api-key").focus();
      throw new Error("the server asks for an API key: enter it in the field above");
    }
    if (!response.ok) throw new Error(await problem(response));
    return response.json();
  }

  // -- the list ---------------------------------------------------------------------------------

  async function loadCalls() {
    hide(view.error);
    view.load.disabled = true;
    try {
      const page = await getJson("/v1/calls?limit=20");
      view.list.replaceChildren(...page.data.map(callItem));
      if (page.data.length === 0) showCallsError("No calls yet: make one, then look again.");
      view.load.textContent = "Refresh";
    } catch (error) {
      showCallsError(`The calls could not be read: ${error.message}.`);
    } finally {
      view.load.disabled = false;
    }
  }

  function callItem(record) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "call-item";
    button.dataset.id = record.id;
    const first = document.createElement("span");
    first.className = "call-when";
    first.textContent = [when(record.started_at), record.transport, record.agent].join(" · ");
    const second = document.createElement("span");
    second.className = "call-how";
    second.textContent = `${duration(record)} · ended: ${record.end_reason}`;
    button.append(first, second);
    button.addEventListener("click", () => showCall(record.id, button));
    item.append(button);
    return item;
  }

  // -- one call ---------------------------------------------------------------------------------

  async function showCall(id, button) {
    hide(view.error);
    for (const other of view.list.querySelectorAll(".call-item")) {
      other.setAttribute("aria-current", String(other === button));
    }
    let record;
    try {
      record = await getJson(`/v1/calls/${encodeURIComponent(id)}`);
    } catch (error) {
      showCallsError(`The call could not be read: ${error.message}.`);
      return;
    }
    view.title.textContent = `Call of ${when(record.started_at)}`;
    view.facts.textContent = [record.transport, record.agent, duration(record),
      `ended: ${record.end_reason}`].join(" · ");
    drawChart(record.lines);
    showTranscript(record.lines);
    view.detail.hidden = false;
    await showRecording(record);
  }

  async function showRecording(record) {
    if (recordingUrl) URL.revokeObjectURL(recordingUrl);
    recordingUrl = null;
    view.player.removeAttribute("src");
    view.playerBox.hidden = true;
    if (!record.recording) return;
    // fetched with the key (an <audio src> could not send it), then played from memory
    const response = await apiFetch(`/v1/calls/${encodeURIComponent(record.id)}/recording`);
    if (!response.ok) return; // not finished yet, or gone
    recordingUrl = URL.createObjectURL(await response.blob());
    view.player.src = recordingUrl;
    view.playerBox.hidden = false;
  }

  function showTranscript(lines) {
    view.transcript.replaceChildren(...lines.map((line) => {
      const item = document.createElement("li");
      const caller = line.speaker === "caller";
      item.className = `caption ${caller ? "user" : "agent"}`;
      const who = document.createElement("span");
      who.className = "who";
      const end = line.end_s === undefined || line.end_s === null ? "" : `–${clock(line.end_s)}`;
      who.textContent = `${caller ? "Caller" : "Agent"} · ${clock(line.start_s)}${end}`;
      const text = document.createElement("span");
      text.className = "text";
      item.append(who, text);
      if (line.interrupted) {
        const heard = line.heard || "";
        text.textContent = heard;
        const rest = line.text.startsWith(heard) ? line.text.slice(heard.length) : "";
        if (rest) {
          const unheard = document.createElement("span");
          unheard.className = "unheard";
          unheard.title = "not heard: the caller spoke over it";
          unheard.textContent = rest;
          text.append(unheard);
        }
        item.classList.add("interrupted");
        item.append(note(" (interrupted by the caller)"));
      } else {
        text.textContent = line.text;
        if (line.keypad) item.append(note(" (keyed in)"));
      }
      return item;
    }));
  }

  function note(words) {
    const span = document.createElement("span");
    span.className = "note";
    span.textContent = words;
    return span;
  }

  // -- the chart --------------------------------------------------------------------------------

  function drawChart(lines) {
    const turns = lines.filter((line) => line.speaker === "agent" && line.latency_ms);
    if (turns.length === 0) {
      view.chart.textContent = "No answered turns in this call.";
      return;
    }
    const width = 600, left = 64, right = 76, row = 30, bar = 18, top = 6;
    const parts = turns.map((line) => Object.entries(line.latency_ms)
      .filter(([stage]) => stage !== "total")
      .map(([stage, ms]) => ({ stage, ms: Math.max(0, ms) })));
    const totals = turns.map((line, i) => line.latency_ms.total ??
      parts[i].reduce((sum, part) => sum + part.ms, 0));
    const scale = (width - left - right) / Math.max(1, ...totals);
    const height = top * 2 + row * turns.length;
    const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%",
      role: "img", "aria-labelledby": "chart-title" });
    const title = svgElement("title", { id: "chart-title" });
    title.textContent = totals.map((ms, i) => `turn ${i + 1}: ${Math.round(ms)} ms`).join(", ");
    svg.append(title);
    turns.forEach((line, i) => {
      const y = top + i * row;
      svg.append(svgText(`Turn ${i + 1}`, 0, y + bar - 4, "chart-label"));
      let x = left;
      for (const { stage, ms } of parts[i]) {
        const end = stage.split("->")[1];
        const w = ms * scale;
        const rect = svgElement("rect", { x, y, width: Math.max(w, 0.5), height: bar,
          fill: (STAGES[end] || OTHER).colour, "data-stage": end });
        const tip = svgElement("title", {});
        tip.textContent = `${stageName(stage)}: ${Math.round(ms)} ms`;
        rect.append(tip);
        svg.append(rect);
        x += w;
      }
      svg.append(svgText(`${Math.round(totals[i])} ms`, x + 6, y + bar - 4, "chart-total"));
    });
    const seen = new Set(parts.flat().map((part) => part.stage));
    const legend = document.createElement("ul");
    legend.className = "legend";
    for (const stage of seen) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = (STAGES[stage.split("->")[1]] || OTHER).colour;
      item.append(swatch, stageName(stage));
      legend.append(item);
    }
    view.chart.replaceChildren(svg, legend);
  }

  function stageName(stage) {
    return stage.split("->").map((point) => POINTS[point] || point.replaceAll("_", " "))
      .join(" → ");
  }

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  function svgText(words, x, y, className) {
    const text = svgElement("text", { x, y, class: className });
    text.textContent = words;
    return text;
  }

  // -- words ------------------------------------------------------------------------------------

  function when(iso) {
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function duration(record) {
    const seconds = Math.max(0, (new Date(record.ended_at) - new Date(record.started_at)) / 1000);
    return seconds < 60 ? `${seconds.toFixed(1)} s`
      : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  function clock(seconds) {
    const minutes = Math.floor(seconds / 60);
    return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
  }

  function showCallsError(message) {
    view.error.textContent = message;
    view.error.hidden = false;
  }

  function hide(element) {
    element.hidden = true;
    element.textContent = "";
  }

  view.load.addEventListener("click", loadCalls);
})();
