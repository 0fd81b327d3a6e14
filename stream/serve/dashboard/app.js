// facestream dashboard: live camera views with boxes, attendance roster, events, session controls.
// Plain browser JavaScript, no build step and nothing fetched from outside this server.
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  // The token arrives in the address's fragment (#token=..., never sent to a server) or, from old links, its
  // query; the page trades it for an HttpOnly session cookie and takes it out of the address and the history.
  // Nothing the page requests carries it afterwards: the cookie goes along by itself.
  let token = new URLSearchParams(location.hash.slice(1)).get("token") || params.get("token") || "";
  const $ = (sel) => document.querySelector(sel);
  const query = (extra = {}) => {
    const s = new URLSearchParams(extra).toString();
    return s ? "?" + s : "";
  };

  async function login() {
    if (!token) return true;
    const resp = await fetch("/login", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (resp.status === 401) return false;
    token = "";
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
    return true;
  }

  const cameras = new Map();   // source id -> {canvas, ctx, img, faces, width, height, caption, times, stats}
  const sessions = new Map();  // session name -> attendance_state message
  let selected = null;
  let ws = null;
  let backoff = 500;
  let stopped = false;         // true after an auth failure: retrying cannot help
  let refetchTimer = null;
  let requestId = 0;
  let historyShown = false;
  const blurBox = $("#blur");
  blurBox.checked = params.get("blur") === "1";

  // ---- connection ---------------------------------------------------------------------------------------
  function setConn(state, text) {
    const el = $("#conn");
    el.dataset.state = state;
    el.textContent = text || state;
  }

  function authFailed(detail) {
    stopped = true;
    setConn("unauthorized", "no access");
    const banner = $("#auth-error");
    banner.hidden = false;
    banner.querySelector(".why").textContent = token
      ? "The access token is wrong."
      : "This dashboard needs an access token (the server's server.token).";
    $("#token-form").hidden = false;
    if (detail) log("error", detail);
  }

  async function connect() {
    if (stopped) return;
    setConn(ws ? "reconnecting" : "connecting", ws ? "reconnecting…" : "connecting…");
    try {
      if (!(await login())) return authFailed("server refused the token (401)");
      startPolling();
      // also the token check: a browser cannot read why a websocket handshake was refused
      const resp = await fetch("/api/attendance" + query(), { cache: "no-store" });
      if (resp.status === 401) return authFailed("server refused the token (401)");
      if (resp.ok) applyStates(await resp.json());
    } catch (err) {
      return retry();
    }
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/${query({ frames: "jpeg" })}`;
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => { backoff = 500; setConn("open", "live"); $("#auth-error").hidden = true; sendPictures(true); };
    sock.onmessage = (ev) => { try { handle(JSON.parse(ev.data)); } catch (err) { console.error(err); } };
    sock.onclose = () => { if (ws === sock) retry(); };
  }

  function retry() {
    if (stopped) return;
    setConn("reconnecting", "reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  }

  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { showStartMsg("Not connected; retrying…", true); return false; }
    ws.send(JSON.stringify(msg));
    return true;
  }

  // ---- messages -------------------------------------------------------------------------------------------
  function handle(msg) {
    switch (msg.type) {
      case "hello":
        (msg.sources || []).forEach(ensureCamera);
        if (msg.attendance) applyStates(msg.attendance);
        if (msg.attendance_error) log("error", msg.attendance_error);
        if (!historyShown) {  // what happened before this page connected, once
          historyShown = true;
          for (const ev of msg.attendance_recent || []) logEvent(ev);
        }
        log("info", "connected to the server");
        break;
      case "frame": onFrame(msg); break;
      case "attendance": onRecord(msg); logEvent(msg); break;
      case "unknown": {
        const st = sessions.get(msg.session);
        if (st) { st.unknown = msg.count; if (msg.session === selected) renderSession(); }
        logEvent(msg);
        break;
      }
      case "session":
        logEvent(msg);
        scheduleRefetch();
        break;
      case "attendance_reply":
        if (msg.ok) {
          showStartMsg(`${msg.command === "attendance_stop" ? "Stopped" : "Started"} ${msg.session.name}.`, false);
          if (msg.command === "attendance_start") selected = msg.session.name;
          scheduleRefetch(0);
        } else {
          showStartMsg(msg.error, true);
          log("error", msg.error);
        }
        break;
      case "feedback_reply": onFeedbackReply(msg); break;
      case "enrol_reply": onEnrolReply(msg); break;
      case "error": log("error", msg.error || JSON.stringify(msg)); break;
      case "subscribed": break;
      case "event":
        // person events are what a human wants to read; track starts/ends are noise here
        if (msg.event === "person_appeared") log(msg.event, describe(msg), null, { source: msg.source, track_id: msg.track_id, name: msg.name });
        else if (msg.event === "person_left") log(msg.event, describe(msg));
        else if (msg.event === "spoof_suspected") log("spoof_suspected", `${describe(msg)}: ${(msg.liveness || {}).reason || "moved like a picture"}`);
        break;
      default:
        break;
    }
  }

  function describe(msg) {
    const parts = [];
    for (const k of ["source", "track_id", "name", "similarity"]) if (msg[k] !== undefined && msg[k] !== null) parts.push(`${k}=${msg[k]}`);
    return parts.join(" ") || JSON.stringify(msg).slice(0, 200);
  }

  // ---- cameras ---------------------------------------------------------------------------------------------
  // Pictures only of the tiles on screen: with a hundred cameras a page shows a few, and every picture asked
  // for is a JPEG some worker encodes and every gateway carries. Boxes and names still come for all.
  const onScreen = new Set();
  let picturesAsked = null;  // what the server was last told (JSON), to send only changes
  let picturesTimer = null;
  let tilesKnown = false;  // until the observer first reports, the server's default (every camera) stands
  const tileWatcher = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    tilesKnown = true;
    for (const e of entries) {
      const source = e.target.dataset.source;
      if (e.isIntersecting) onScreen.add(source); else onScreen.delete(source);
    }
    clearTimeout(picturesTimer);
    picturesTimer = setTimeout(() => sendPictures(false), 150);  // one message for a scroll, not one per tile
  }) : null;
  document.addEventListener("visibilitychange", () => sendPictures(false));

  function sendPictures(force) {
    if (!tileWatcher || !ws || ws.readyState !== WebSocket.OPEN) return;
    const hidden = document.visibilityState === "hidden";
    if (!hidden && !tilesKnown) return;
    const wanted = hidden ? [] : [...onScreen].sort();
    const text = JSON.stringify(wanted);
    if (!force && text === picturesAsked) return;
    picturesAsked = text;
    ws.send(JSON.stringify({ type: "subscribe", jpeg_sources: wanted }));
  }

  function ensureCamera(source) {
    if (cameras.has(source)) return cameras.get(source);
    $("#no-cameras")?.remove();
    const fig = document.createElement("figure");
    fig.className = "camera";
    fig.innerHTML = `<canvas width="640" height="360"></canvas><figcaption><b></b><span class="cam-stats"></span></figcaption>`;
    const canvas = fig.querySelector("canvas");
    canvas.dataset.source = source;
    canvas.dataset.boxes = "0";
    canvas.addEventListener("click", (ev) => pickFace(cameras.get(source), source, ev));
    fig.querySelector("b").textContent = source;
    fig.dataset.source = source;
    $("#cameras").appendChild(fig);
    if (tileWatcher) tileWatcher.observe(fig);
    const cam = { canvas, ctx: canvas.getContext("2d"), img: null, faces: [], width: 640, height: 360,
                  caption: fig.querySelector(".cam-stats"), times: [], stats: null };
    cameras.set(source, cam);
    return cam;
  }

  function onFrame(msg) {
    const cam = ensureCamera(msg.source);
    cam.faces = msg.faces || [];
    if (msg.width) cam.width = msg.width;
    if (msg.height) cam.height = msg.height;
    const now = performance.now();
    cam.times.push(now);
    while (cam.times.length && now - cam.times[0] > 2000) cam.times.shift();
    if (msg.jpeg) {
      const img = new Image();
      img.onload = () => { cam.img = img; draw(cam); };
      img.src = "data:image/jpeg;base64," + msg.jpeg;
    } else {
      draw(cam);
    }
  }

  function draw(cam) {
    const { canvas, ctx } = cam;
    if (canvas.width !== cam.width || canvas.height !== cam.height) {
      canvas.width = cam.width; canvas.height = cam.height;
    }
    ctx.filter = "none";
    if (cam.img) ctx.drawImage(cam.img, 0, 0, canvas.width, canvas.height);
    else { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); }
    const names = [];
    const lw = Math.max(2, canvas.width / 320);
    ctx.font = `${Math.round(Math.max(12, canvas.width / 45))}px system-ui, sans-serif`;
    for (const f of cam.faces) {
      const [x1, y1, x2, y2] = f.box;
      const known = f.person_id !== null && f.person_id !== undefined;
      if (!known && blurBox.checked && cam.img) {
        ctx.save();
        ctx.beginPath(); ctx.rect(x1, y1, x2 - x1, y2 - y1); ctx.clip();
        ctx.filter = `blur(${Math.max(8, Math.round((x2 - x1) / 6))}px)`;
        ctx.drawImage(cam.img, 0, 0, canvas.width, canvas.height);
        ctx.restore();
        ctx.filter = "none";
      }
      // liveness: a named face judged a picture is drawn red and says so; a live one carries a mark
      const spoof = f.liveness_state === "spoof";
      const color = spoof ? "#e5484d" : known ? "#2fbf71" : "#f0a92c";
      ctx.lineWidth = lw; ctx.strokeStyle = color;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const sure = f.confidence != null ? " " + sureText(f.confidence) : (f.similarity != null ? " " + f.similarity.toFixed(2) : "");
      const live = f.liveness_state === "live" ? " \u2713live" : spoof ? " \u26a0 photo?" : "";
      const label = (known ? `${f.name}${sure}` : "unknown") + (known ? live : "");
      names.push(known ? f.name : "unknown");
      const tw = ctx.measureText(label).width + 8;
      const th = parseInt(ctx.font, 10) + 6;
      const ly = y1 - th >= 0 ? y1 - th : y2;
      ctx.fillStyle = color; ctx.fillRect(x1, ly, tw, th);
      ctx.fillStyle = "#000"; ctx.fillText(label, x1 + 4, ly + th - 5);
    }
    canvas.dataset.boxes = String(cam.faces.length);
    if (cam.faces.length) canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
    canvas.dataset.names = names.join("|");
    canvas.dataset.faces = JSON.stringify(cam.faces.map((f) => ({ box: f.box, name: f.name, track_id: f.track_id,
                                                                  liveness: f.liveness_state })));
    renderCaption(cam);
  }

  // how sure a name is: 1 - the chance that a stranger scores as high against this gallery
  function sureText(confidence) {
    const pct = 100 * confidence;
    return pct >= 99.995 ? ">99.99%" : pct.toFixed(pct >= 99 ? 2 : 1) + "%";
  }

  // ---- corrections: "not this person" / "this is X" --------------------------------------------------------
  let picked = null;  // {source, track_id, name, person_id}
  const pendingFeedback = new Map();  // request id -> description

  function pickFace(cam, source, ev) {
    const rect = cam.canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) * cam.canvas.width / rect.width;
    const y = (ev.clientY - rect.top) * cam.canvas.height / rect.height;
    const face = cam.faces.find((f) => x >= f.box[0] && x <= f.box[2] && y >= f.box[1] && y <= f.box[3]);
    if (!face) return;
    openFacePanel({ source, track_id: face.track_id, name: face.person_id ? face.name : null,
                    confidence: face.confidence });
  }

  function openFacePanel(face) {
    picked = face;
    const panel = $("#face-panel");
    panel.hidden = false;
    panel.dataset.source = face.source;
    panel.dataset.track = String(face.track_id);
    $("#face-info").textContent = `${face.source} · track ${face.track_id} · ` +
      (face.name ? `named ${face.name}${face.confidence != null ? " (" + sureText(face.confidence) + " sure)" : ""}` : "unknown");
    $("#not-btn").hidden = !face.name;
    $("#enrol-form").hidden = !!face.name;  // a stranger: enrol their track's best views as a new person
    $("#not-btn").textContent = face.name ? `Not ${face.name}` : "Not this person";
    $("#face-msg").textContent = "";
  }

  function sendFeedback(msg, text) {
    msg.id = ++requestId;
    pendingFeedback.set(msg.id, text);
    if (!ws || ws.readyState !== WebSocket.OPEN) { faceMsg("Not connected; retrying…", true); return; }
    ws.send(JSON.stringify(msg));
    faceMsg(text + "…", false);
  }

  function faceMsg(text, isError) {
    const el = $("#face-msg");
    el.textContent = text;
    el.className = "msg " + (isError ? "error" : "ok");
  }

  function onFeedbackReply(msg) {
    const what = pendingFeedback.get(msg.id) || "correction";
    pendingFeedback.delete(msg.id);
    if (!msg.ok) { faceMsg(msg.error, true); log("error", msg.error); return; }
    const fb = msg.feedback;
    if (msg.command === "feedback_undo") {
      const li = document.querySelector(`#corrections li[data-id="${CSS.escape(fb.id)}"]`);
      if (li) { li.classList.add("undone"); li.querySelector("button")?.remove(); }
      log("correction", `undone: ${fb.verdict === "not" ? "not " : ""}${fb.name}`);
      return;
    }
    faceMsg(`${what}: done.`, false);
    log("correction", `${fb.verdict === "not" ? "not " + fb.name : "this is " + fb.name} (${fb.source})`);
    const list = $("#corrections");
    list.querySelector(".muted")?.remove();
    const li = document.createElement("li");
    li.dataset.id = fb.id;
    li.innerHTML = `<span>${fb.verdict === "not" ? "not" : "is"} <b>${esc(fb.name)}</b> · ${esc(fb.source)}</span>`;
    const undo = document.createElement("button");
    undo.type = "button";
    undo.textContent = "Undo";
    undo.addEventListener("click", () => sendFeedback({ type: "feedback_undo", feedback: fb.id }, `Undoing ${fb.verdict} ${fb.name}`));
    li.appendChild(undo);
    list.insertBefore(li, list.firstChild);
  }

  $("#not-btn").addEventListener("click", () => {
    if (picked && picked.name) sendFeedback({ type: "feedback", verdict: "not", source: picked.source, track_id: picked.track_id }, `Not ${picked.name}`);
  });
  $("#is-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const person = String(new FormData(ev.target).get("person") || "").trim();
    if (picked && person) sendFeedback({ type: "feedback", verdict: "is", source: picked.source, track_id: picked.track_id, person }, `This is ${person}`);
  });
  $("#enrol-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = String(new FormData(ev.target).get("name") || "").trim();
    if (picked && name) sendFeedback({ type: "enrol_track", source: picked.source, track_id: picked.track_id, name }, `Enrolling ${name}`);
  });

  function onEnrolReply(msg) {
    pendingFeedback.delete(msg.id);
    if (!msg.ok) { faceMsg(msg.error, true); log("error", msg.error); return; }
    const stored = (msg.images || []).filter((v) => v.verdict === "enrolled").length;
    faceMsg(`Enrolled ${msg.name} from ${stored} view${stored === 1 ? "" : "s"} of the track.`, false);
    log("correction", `enrolled ${msg.name} from ${stored} of ${(msg.images || []).length} views`);
  }
  $("#face-close").addEventListener("click", () => { $("#face-panel").hidden = true; picked = null; });

  function renderCaption(cam) {
    const s = cam.stats || {};
    const fps = s.fps != null ? s.fps : cam.times.length / 2;
    const parts = [`${Number(fps).toFixed(1)} fps`];
    if (s.dropped != null) parts.push(`dropped ${s.dropped}`);
    if (s.state) parts.push(s.state);
    cam.caption.textContent = parts.join(" · ");
  }

  let polling = false;
  function startPolling() {  // once signed in: the stats need the session cookie
    if (!polling) { polling = true; pollStats(); }
  }

  async function pollStats() {
    if (stopped) { polling = false; return; }
    try {
      const resp = await fetch("/stats" + query(), { cache: "no-store" });
      if (resp.ok) {
        const stats = await resp.json();
        const sources = stats.sources || {};
        for (const [id, s] of Object.entries(sources)) {
          const cam = ensureCamera(id);
          cam.stats = s;  // the pipeline's fps, dropped and state
          renderCaption(cam);
        }
      }
    } catch (err) { /* the websocket shows the connection state */ }
    setTimeout(pollStats, 2000);
  }

  blurBox.addEventListener("change", () => cameras.forEach(draw));

  // ---- attendance --------------------------------------------------------------------------------------------
  function applyStates(list) {
    for (const st of list) sessions.set(st.session.name, st);
    if (!selected || !sessions.has(selected)) selected = list.length ? list[0].session.name : selected;
    renderSessions();
  }

  function scheduleRefetch(delay = 300) {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(refetch, delay);
  }

  async function refetch() {
    try {
      const resp = await fetch("/api/attendance" + query(), { cache: "no-store" });
      if (resp.status === 401) return authFailed();
      if (!resp.ok) return;
      const list = await resp.json();
      applyStates(list);
      if (selected && !list.some((st) => st.session.name === selected)) {  // an older session picked by hand
        const one = await fetch("/api/attendance" + query({ session: selected }), { cache: "no-store" });
        if (one.ok) applyStates(await one.json());
      }
    } catch (err) { /* reconnect logic handles outages */ }
  }

  // one line in the event log per attendance event (live, or from the server's recent history)
  function logEvent(msg) {
    if (msg.type === "attendance" && msg.new) {
      const rec = msg.record;
      const tag = rec.on_roster ? rec.status : "not on roster";
      log(rec.status, `${rec.name} ${tag} in ${msg.session} (${rec.camera}, ${rec.best_similarity.toFixed(2)})`, msg.at);
    } else if (msg.type === "unknown") {
      log("unknown", `unknown face on ${msg.camera} (${msg.count} in ${msg.session})`, msg.at);
    } else if (msg.type === "session") {
      log("session", `session ${msg.session.name} ${msg.action}`, msg.at);
    }
  }

  function onRecord(msg) {
    const st = sessions.get(msg.session);
    const rec = msg.record;
    if (!st) { scheduleRefetch(); return; }
    const row = st.roster.find((r) => r.person_id === rec.person_id);
    if (row) Object.assign(row, rec, { name: row.name });
    else {
      const ex = st.extra.find((r) => r.person_id === rec.person_id);
      if (ex) Object.assign(ex, rec); else st.extra.push(rec);
    }
    st.counts = counts(st);
    if (msg.session === selected) renderSession();
  }

  function counts(st) {
    const c = { present: 0, late: 0, absent: 0 };
    for (const r of st.roster) c[r.status] = (c[r.status] || 0) + 1;
    c.not_on_roster = st.extra.length;
    c.unknown = st.unknown;
    return c;
  }

  function renderSessions() {
    const sel = $("#session-select");
    const names = [...sessions.keys()];
    sel.innerHTML = "";
    for (const name of names) {
      const opt = document.createElement("option");
      opt.value = name;
      opt.textContent = `${name} (${sessions.get(name).session.state})`;
      sel.appendChild(opt);
    }
    if (selected) sel.value = selected;
    renderSession();
  }

  const fmtTime = (ts) => (ts == null ? "" : new Date(ts * 1000).toLocaleTimeString());

  function snapshotCell(name, rec) {
    if (!rec.has_snapshot) return "<td></td>";
    const src = "/api/attendance/snapshot" + query({ session: name, person: rec.person_id, v: rec.best_similarity });
    return `<td><img alt="" src="${esc(src)}"></td>`;
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function renderSession() {
    const st = selected ? sessions.get(selected) : null;
    const rosterBody = $("#roster tbody");
    const extraBody = $("#extra tbody");
    if (!st) {
      $("#session-info").textContent = "No session yet. Start one below or with `facestream attendance start`.";
      rosterBody.innerHTML = ""; extraBody.innerHTML = "";
      $("#session-state").textContent = "";
      return;
    }
    const s = st.session;
    $("#session-state").textContent = s.state;
    $("#session-state").dataset.state = s.state;
    const cams = s.cameras.length ? s.cameras.join(", ") : "all cameras";
    const until = s.end ? fmtTime(s.end) : "until stopped";
    $("#session-info").textContent = `${cams} · ${fmtTime(s.start)} – ${until} · late after ${Math.round(s.late_after_s / 60)} min · roster: ${s.selector || "-"}`;
    const c = st.counts || counts(st);
    $("#counts").innerHTML = `<span class="status present">${c.present} present</span><span class="status late">${c.late} late</span><span class="status absent">${c.absent} absent</span>`;
    rosterBody.innerHTML = st.roster.map((r) => `
      <tr data-person-id="${esc(r.person_id)}" data-status="${esc(r.status)}">
        ${snapshotCell(s.name, r)}<td class="name">${esc(r.name)}</td>
        <td><span class="status ${esc(r.status)}">${esc(r.status)}</span></td>
        <td>${fmtTime(r.first_seen)}</td><td>${esc(r.camera || "")}</td>
        <td>${r.best_similarity != null ? r.best_similarity.toFixed(2) : ""}</td></tr>`).join("");
    extraBody.innerHTML = st.extra.map((r) => `
      <tr data-person-id="${esc(r.person_id)}" data-status="${esc(r.status)}">
        ${snapshotCell(s.name, r)}<td class="name">${esc(r.name)}</td><td>${fmtTime(r.first_seen)}</td>
        <td>${esc(r.camera || "")}</td><td>${r.best_similarity != null ? r.best_similarity.toFixed(2) : ""}</td></tr>`).join("");
    $("#unknown-count").textContent = String(st.unknown);
    $("#report-csv").href = "/api/attendance/report" + query({ session: s.name, format: "csv" });
    $("#report-xlsx").href = "/api/attendance/report" + query({ session: s.name, format: "xlsx" });
    $("#stop-btn").disabled = s.state === "closed";
  }

  $("#session-select").addEventListener("change", (ev) => { selected = ev.target.value; renderSession(); scheduleRefetch(0); });

  // ---- controls ------------------------------------------------------------------------------------------------
  function showStartMsg(text, isError) {
    const el = $("#start-msg");
    el.textContent = text;
    el.className = "msg " + (isError ? "error" : "ok");
    if (isError) $("#start-box").open = true;
  }

  $("#start-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const msg = { type: "attendance_start", id: ++requestId };
    for (const [k, v] of form.entries()) msg[k] = String(v).trim();
    msg.people = msg.people ? msg.people.split(",").map((x) => x.trim()).filter(Boolean) : [];
    msg.cameras = msg.cameras ? msg.cameras.split(",").map((x) => x.trim()).filter(Boolean) : [];
    if (send(msg)) showStartMsg("Starting…", false);
  });

  $("#stop-btn").addEventListener("click", () => {
    if (selected) send({ type: "attendance_stop", session: selected, id: ++requestId });
  });

  // ---- event log -------------------------------------------------------------------------------------------------
  function log(kind, text, at, face) {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    const when = at ? new Date(at * 1000) : new Date();
    li.innerHTML = `<time>${when.toLocaleTimeString()}</time><b>${esc(kind)}</b> ${esc(text)}`;
    if (face && face.name) {  // a recognition: correct it from here, even after the person left
      const btn = document.createElement("button");
      btn.type = "button";
      btn.textContent = `not ${face.name}`;
      btn.addEventListener("click", () => {
        openFacePanel(face);
        sendFeedback({ type: "feedback", verdict: "not", source: face.source, track_id: face.track_id }, `Not ${face.name}`);
      });
      li.appendChild(btn);
    }
    const list = $("#log");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 300) list.removeChild(list.lastChild);
  }

  $("#token-form").addEventListener("submit", (ev) => {  // typed, not put in any address
    ev.preventDefault();
    token = String(new FormData(ev.target).get("token") || "").trim();
    ev.target.reset();
    stopped = false;
    $("#auth-error").hidden = true;
    connect();
  });

  connect();
})();
