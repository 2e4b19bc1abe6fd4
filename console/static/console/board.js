// The agent console's live board: applies the agents' feed (Server-Sent Events) to the cards.
// Every value from the feed is inserted with textContent, never as HTML.
"use strict";

(function () {
  const board = document.getElementById("board");
  if (!board) {
    return;
  }
  const status = document.getElementById("live-status");
  const flashBox = document.getElementById("flash");
  const csrf = board.dataset.csrf || "";
  const EVENTS = [
    "handoff", "queue_waiting", "transfer_result", "call_taken", "take_failed",
    "agent_note", "call_ended", "callback_requested",
    "message_sent", "message_failed", "message_opted_out", "page_opened", "page_submitted",
  ];
  let flowPages = {};
  try {
    flowPages = JSON.parse(board.dataset.flowPages || "{}");
  } catch (_error) {
    flowPages = {};
  }
  const skew = Number(board.dataset.now || 0) - Date.now() / 1000;
  let transfers = Number(board.dataset.transfers || 0);
  let source = null;
  document.body.dataset.lastEventId = board.dataset.lastId || "";

  function now() {
    return Date.now() / 1000 + skew;
  }

  function say(message, kind) {
    const line = document.createElement("p");
    line.className = "flash " + (kind || "info");
    line.textContent = message;
    flashBox.replaceChildren(line);
  }

  function duration(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (h) return h + "h " + pad(m) + "m";
    return m ? m + "m " + pad(s) + "s" : s + "s";
  }

  function clock(at) {
    const when = typeof at === "number" ? new Date(at * 1000) : new Date(String(at || ""));
    return isNaN(when.getTime()) ? "" : when.toISOString().slice(11, 19);
  }

  function idParts(id) {
    const [ms, seq] = String(id || "0-0").split("-");
    return [Number(ms) || 0, Number(seq) || 0];
  }

  function newerThan(a, b) {
    const [am, as] = idParts(a);
    const [bm, bs] = idParts(b);
    return am > bm || (am === bm && as > bs);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(root, selector, value) {
    const node = root.querySelector(selector);
    if (node) node.textContent = value === undefined || value === null ? "" : String(value);
  }

  function cardOf(callSid) {
    for (const card of board.querySelectorAll("article.caller-card")) {
      if (card.dataset.callSid === callSid) return card;
    }
    return null;
  }

  // A value for a list of pairs: "—" when unset, JSON for lists and maps, else as it is.
  function shown(value) {
    if (value === undefined || value === null) return "—";
    return typeof value === "object" ? JSON.stringify(value) : value;
  }

  function fillPairs(list, pairs, show) {
    list.replaceChildren();
    for (const [name, value] of Object.entries(pairs || {})) {
      list.append(el("dt", "", name), el("dd", "", show ? show(value) : value));
    }
  }

  function noteItem(note) {
    const item = el("li");
    item.append(
      el("span", "note-agent", note.agent || ""), " ",
      el("span", "note-disposition", note.disposition || ""), " ",
      el("span", "note-text", note.text || ""),
    );
    return item;
  }

  function setState(card, state) {
    card.dataset.state = state;
    card.className = "caller-card state-" + state;
    setText(card, ".state", state);
    const take = card.querySelector("button.take-call");
    if (take) take.disabled = state !== "waiting";
  }

  function fill(card, event) {
    const data = event.data || {};
    const bundle = data.bundle || {};
    const caller = bundle.caller || {};
    card.dataset.callSid = event.call_sid;
    card.dataset.handoffId = bundle.id || data.handoff_id || "";
    card.dataset.since = String(event.at || now());
    setState(card, "waiting");
    setText(card, ".caller-name", caller.name || caller.number || "Unknown caller");
    setText(card, ".caller-number", caller.number || "");
    setText(card, ".identified-by", (caller.identified_by || []).join(", "));
    setText(card, ".confidence", caller.confidence || "");
    setText(card, ".language", caller.language || "—");
    setText(card, ".reason", bundle.reason || "");
    setText(card, ".summary", bundle.summary || "");
    const path = card.querySelector("ol.path");
    path.replaceChildren();
    for (const step of bundle.path || []) {
      const item = el("li");
      item.append(el("span", "label", step.label || step.node || ""));
      if (step.answer) item.append(" — ", el("q", "answer", step.answer));
      if (step.outcome) item.append(" ", el("span", "outcome", "(" + step.outcome + ")"));
      path.append(item);
    }
    fillPairs(card.querySelector(".inputs"), bundle.inputs, shown);
    fillPairs(card.querySelector(".attempts"), bundle.attempts,
      (t) => (t.no_input || 0) + " no input, " + (t.no_match || 0) + " no match");
    fillPairs(card.querySelector(".context"), bundle.context, shown);
    setText(card, ".ivr-seconds", duration(bundle.ivr_seconds || 0) + " in the IVR");
    setText(card, ".resumes", (bundle.resumes || 0) + " resume(s)");
    const contacts = card.querySelector(".recent-contacts");
    contacts.replaceChildren();
    for (const c of bundle.recent_contacts || []) {
      contacts.append(el("li", "", [clock(c.at), c.direction, c.channel, c.outcome || "",
        c.summary || ""].join(" ")));
    }
    const previous = card.querySelector(".previous");
    previous.replaceChildren();
    for (const id of bundle.previous || []) previous.append(el("li", "", id));
    const notes = card.querySelector(".notes");
    notes.replaceChildren();
    for (const note of bundle.notes || []) notes.append(noteItem(note));
    const sid = encodeURIComponent(event.call_sid);
    card.querySelector("form.take-form").action = board.dataset.takeUrl.replace("CALLSID", sid);
    card.querySelector("form.note-form").action = board.dataset.notesUrl.replace("CALLSID", sid);
    fillPageForm(card, (bundle.flow || {}).id, sid);
  }

  // The "Send a page" form of a card drawn here: the pages of the caller's flow. Whether the
  // number opted out of texts is the server's to say (it refuses, and the agent is told).
  function fillPageForm(card, flow, sid) {
    const form = card.querySelector("form.page-form");
    if (!form) return;
    const pages = flowPages[flow] || [];
    const select = form.querySelector("select[name=page]");
    select.replaceChildren();
    for (const [id, title] of pages) {
      const option = el("option", "", title);
      option.value = id;
      select.append(option);
    }
    form.action = board.dataset.pageUrl.replace("CALLSID", sid);
    form.hidden = pages.length === 0;
  }

  function newCard(event) {
    const template = document.getElementById("card-template");
    const card = template.content.querySelector("article.caller-card").cloneNode(true);
    fill(card, event);
    return card;
  }

  function brief(data) {
    const shown = [];
    for (const [key, value] of Object.entries(data || {})) {
      if (key === "bundle" || key === "handoff_id") continue;
      if (["string", "number"].includes(typeof value)) shown.push(key + " " + value);
    }
    return shown.length ? ": " + shown.join(", ").slice(0, 300) : "";
  }

  function addTimeline(card, id, event) {
    const item = el("li", "live");
    item.dataset.id = id;
    item.append(el("time", "", clock(event.at)), " " + event.name + brief(event.data));
    card.querySelector(".timeline").append(item);
  }

  // What a card says of a page sent to the caller (as console/board.py's page_line).
  const PAGE_EVENTS = [
    "message_sent", "message_failed", "message_opted_out", "page_opened", "page_submitted",
  ];

  function pageLine(name, data) {
    const page = String(data.page || "the page");
    if (name === "page_submitted") {
      let picked = "";
      for (const key of ["summary", "label"]) {
        if (!picked && typeof data[key] === "string" && data[key].trim()) {
          picked = data[key].trim().slice(0, 200);
        }
      }
      for (const [key, value] of Object.entries(data.values || {})) {
        if (!picked && (key === "label" || key.endsWith("_label")) && typeof value === "string") {
          picked = value.trim().slice(0, 200);
        }
      }
      if (!picked) {
        picked = Object.values(data.values || {})
          .filter((v) => ["string", "number"].includes(typeof v)).join(", ").slice(0, 200);
      }
      return "Caller picked: " + (picked || page);
    }
    if (name === "page_opened") return "Caller opened " + page;
    const channel = data.channel === "sms" ? "text" : String(data.channel || "message");
    if (name === "message_sent") return "The " + channel + " was sent";
    if (name === "message_opted_out") {
      return "The " + channel + " was not sent: the number opted out of texts";
    }
    const error = String(data.error || data.status || "").trim();
    return "The " + channel + " could not be sent" + (error ? ": " + error : "");
  }

  // What a card says of a voicemail (as console/board.py's recording_line); "" for nothing.
  function recordingLine(data) {
    const text = typeof data.transcription === "string" ? data.transcription.trim() : "";
    if (text && data.transcription_status !== "failed") {
      return 'Voicemail transcribed: "' + text.slice(0, 300) + '"';
    }
    if (data.status === "recorded") {
      return "The caller left a " + (parseInt(data.duration, 10) || 0) + "-second voicemail";
    }
    if (data.status === "empty") return "The caller left no voicemail";
    if (data.status === "absent" || data.status === "failed") return "The voicemail could not be kept";
    return "";
  }

  function apply(id, event) {
    const data = event.data || {};
    let card = cardOf(event.call_sid);
    if (card && card.dataset.lastId && !newerThan(id, card.dataset.lastId)) {
      return; // drawn into the page already, or replayed twice
    }
    if (event.name === "handoff") {
      if (card) {
        const kept = Array.from(card.querySelectorAll(".notes > li"));
        fill(card, event);
        card.querySelector(".notes").replaceChildren(...kept);
      } else {
        card = newCard(event);
        board.insertBefore(card, board.querySelector("p.empty"));
      }
      transfers += 1;
    }
    if (event.name === "callback_requested") {
      const notice = document.querySelector(".callbacks-new");
      if (notice) notice.hidden = false;
    }
    if (!card) return;
    card.dataset.lastId = id;
    addTimeline(card, id, event);
    if (event.name === "queue_waiting") {
      setText(card, ".queue", data.position ? "position " + data.position : "");
    } else if (event.name === "call_taken") {
      setState(card, "connecting");
    } else if (event.name === "transfer_result") {
      setState(card, data.result === "connected" ? "connected" : String(data.result || "ended"));
    } else if (event.name === "call_ended") {
      setState(card, "ended");
    } else if (event.name === "agent_note") {
      card.querySelector(".notes").append(noteItem(data));
    } else if (PAGE_EVENTS.includes(event.name)) {
      const item = el("li", "page-" + event.name);
      item.append(el("time", "", clock(event.at)), " " + pageLine(event.name, data));
      card.querySelector(".page-results").append(item);
    } else if (event.name === "recording" && recordingLine(data)) {
      const item = el("li", "page-recording");
      item.append(el("time", "", clock(event.at)), " " + recordingLine(data));
      card.querySelector(".page-results").append(item);
    }
    strip();
  }

  function strip() {
    const cards = Array.from(board.querySelectorAll("article.caller-card"));
    const waiting = cards.filter((c) => c.dataset.state === "waiting");
    let longest = 0;
    for (const card of cards) {
      const wait = now() - Number(card.dataset.since || now());
      setText(card, ".wait", duration(wait));
      if (card.dataset.state === "waiting") longest = Math.max(longest, wait);
    }
    setText(document, "#waiting-count", waiting.length);
    setText(document, "#longest-wait", duration(longest));
    setText(document, "#transfers-hour", transfers);
    const empty = board.querySelector("p.empty");
    if (empty) empty.hidden = cards.length > 0;
  }

  function connect() {
    const last = document.body.dataset.lastEventId;
    const url = board.dataset.eventsUrl + (last ? "?last_id=" + encodeURIComponent(last) : "");
    source = new EventSource(url);
    source.onopen = () => {
      status.textContent = "live";
      status.className = "status live";
    };
    source.onerror = () => {
      status.textContent = "reconnecting";
      status.className = "status";
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, 5000); // refused (logged out?) or gone: try again with our last id
      }
    };
    for (const name of EVENTS) {
      source.addEventListener(name, (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch (_error) {
          return;
        }
        document.body.dataset.lastEventId = message.lastEventId;
        apply(message.lastEventId, event);
      });
    }
  }

  board.addEventListener("submit", async (submitted) => {
    const form = submitted.target;
    if (!form.matches("form.take-form, form.note-form, form.page-form")) return;
    submitted.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch", Accept: "application/json" },
      });
      let answer = {};
      try {
        answer = await response.json();
      } catch (_error) {
        answer = { error: "The console did not answer (HTTP " + response.status + ")." };
      }
      say(answer.message || answer.error || "Done.", response.ok ? "info" : "error");
      if (response.ok && form.matches("form.note-form")) form.reset();
    } catch (_error) {
      say("The console could not be reached; nothing was sent.", "error");
    } finally {
      const card = form.closest("article.caller-card");
      if (button) {
        button.disabled = form.matches("form.take-form") && card && card.dataset.state !== "waiting";
      }
    }
  });

  setInterval(strip, 1000);
  strip();
  connect();
})();
