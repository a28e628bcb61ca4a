// cairn web console: one page, plain DOM, no framework.
//
// Security rules of this file:
//   - The API token lives in sessionStorage (this tab only) and goes to the
//     server only as "Authorization: Bearer" from fetch. It is never put in
//     a URL the server sees; a token handed over in the URL fragment
//     (#token=...) is moved into sessionStorage and stripped at once.
//   - Every text shown comes from the API through textContent: guest file
//     names and error messages are never parsed as HTML.
//   - Downloads use short-lived signed URLs minted by POST /api/v1/downloads.
"use strict";

const TOKEN_KEY = "cairn-token";
const POLL_MS = 5000;

let pollTimer = null;
let routeSeq = 0; // a view's late answers are dropped once another view is shown

// ---- DOM helpers --------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function $(id) { return document.getElementById(id); }

function table(headers, rows, numeric) {
  return el("div", { class: "scroll" }, bareTable(headers, rows, numeric));
}

function bareTable(headers, rows, numeric) {
  const num = new Set(numeric || []);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { class: num.has(i) ? "num" : null }, h)))),
    el("tbody", {}, rows.length ? rows.map(r => el("tr", {}, r.map((c, i) => el("td", { class: num.has(i) ? "num" : null }, c))))
      : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function bytes(n) {
  if (n === undefined || n === null) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}

function isSet(t) { return t && !t.startsWith("0001-01-01"); }

function when(t) {
  if (!isSet(t)) return "—";
  const d = new Date(t);
  return d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function ago(t) {
  if (!isSet(t)) return "";
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  const abs = Math.abs(s);
  const txt = abs < 90 ? abs + " s" : abs < 5400 ? Math.round(abs / 60) + " min" : abs < 172800 ? Math.round(abs / 3600) + " h" : Math.round(abs / 86400) + " d";
  return s >= 0 ? txt + " ago" : "in " + txt;
}

function state(s) {
  const cls = { ok: "ok", failed: "bad", running: "warn", queued: "muted", cancelled: "warn" }[s] || "";
  return el("span", { class: cls }, s || "—");
}

function link(route, params, text) { return el("a", { href: href(route, params) }, text); }

function href(route, params) {
  const q = new URLSearchParams(params || {}).toString();
  return "#/" + route + (q ? "?" + q : "");
}

// ---- API ----------------------------------------------------------------

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts) {
  const o = Object.assign({ method: "GET", headers: {} }, opts || {});
  o.headers = Object.assign({ "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY) }, o.headers);
  o.cache = "no-store";
  o.credentials = "omit";
  if (o.json !== undefined) {
    o.body = JSON.stringify(o.json);
    o.headers["Content-Type"] = "application/json";
    delete o.json;
  }
  let resp;
  try {
    resp = await fetch(path, o);
  } catch (e) {
    // fetch fails without an answer: serve stopped, restarting, or the
    // network between is down.
    throw new APIError(0, "cairn serve does not answer (stopped, restarting, or the network is down): retrying every " +
      POLL_MS / 1000 + " s.");
  }
  if (resp.status === 401) {
    logout("The token was refused (wrong token, or the server has a new one).");
    throw new APIError(401, "not logged in");
  }
  const ct = resp.headers.get("Content-Type") || "";
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    if (ct.startsWith("application/json")) {
      try { msg = (await resp.json()).error || msg; } catch (e) { /* keep the status */ }
    }
    throw new APIError(resp.status, msg);
  }
  if (ct.startsWith("application/json")) return resp.json();
  return resp;
}

function enc(s) { return encodeURIComponent(s); }

// notice shows the outcome of an action (a queued backup, a refused
// download) in the page's status line, read out by screen readers; it
// stays until the next action or until the administrator opens a view.
let noticeKeep = false;
function notice(msg, isError) {
  const n = $("notice");
  n.textContent = msg;
  n.className = isError ? "error" : "";
  n.hidden = false;
}

// ---- login --------------------------------------------------------------

// takeTokenFromFragment moves a token handed over in the fragment
// (#token=TOKEN, optionally &next=/files?vm=...: the view to open) into
// sessionStorage and strips it from the address bar and the history.
// Fragments never reach the server.
function takeTokenFromFragment() {
  const h = location.hash;
  if (!h.startsWith("#token=")) return;
  const f = new URLSearchParams(h.slice(1));
  const tok = (f.get("token") || "").trim();
  if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
  let next = f.get("next") || "/";
  if (!next.startsWith("/")) next = "/";
  history.replaceState(null, "", location.pathname + location.search + "#" + next);
}

function logout(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(pollTimer);
  $("main").hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("loginerror").textContent = msg || "";
  $("notice").hidden = true;
  $("token").value = "";
  $("token").focus();
}

async function login(tok) {
  sessionStorage.setItem(TOKEN_KEY, tok);
  try {
    await api("/api/v1/status?vms=summary");
  } catch (e) {
    if (e.status !== 401) { $("loginerror").textContent = e.message; }
    return;
  }
  $("loginerror").textContent = "";
  showApp(true);
}

// WHO is GET /api/v1/whoami: the token's name, role and the actions it
// may take ("may"); the console offers only those (null: an older
// server without roles, everything offered).
let WHO = null;
function may(action) { return !WHO || WHO.may.includes(action); }

// showApp shows the console; after a login (focus) the keyboard goes on
// from the view's title, not from the hidden form.
async function showApp(focus) {
  try { WHO = await api("/api/v1/whoami"); } catch (e) { if (e.status === 401) return; WHO = null; }
  if (WHO) $("logout").textContent = "Log out " + WHO.name + " (" + WHO.role + ")";
  $("login").hidden = true;
  $("main").hidden = false;
  $("nav").hidden = false;
  $("logout").hidden = false;
  route(focus ? { type: "login" } : undefined);
}

// ---- confirmation -------------------------------------------------------

function confirmAction(text, okLabel) {
  const d = $("confirm");
  $("confirmtext").textContent = text;
  $("confirmok").textContent = okLabel || "OK";
  return new Promise(resolve => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

// ---- routing ------------------------------------------------------------

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, "");
  const [name, q] = h.split("?", 2);
  return { name: name || "", params: new URLSearchParams(q || "") };
}

// focusKey names the focused element of the view so that a poll that
// redraws the view can give the focus back to its new copy (a keyboard
// user on "Verify now" stays there); focusFrom finds that copy.
function focusKey() {
  const a = document.activeElement;
  if (!a || a === document.body || !$("view").contains(a)) return null;
  if (a.id) return { id: a.id };
  const same = [...$("view").querySelectorAll(a.tagName)].filter(e => e.textContent === a.textContent);
  return { tag: a.tagName, text: a.textContent, index: same.indexOf(a) };
}

function focusFrom(key) {
  if (!key) return;
  let e = null;
  if (key.id) e = $(key.id);
  else e = [...$("view").querySelectorAll(key.tag)].filter(x => x.textContent === key.text)[key.index];
  if (e) e.focus({ preventScroll: true });
}

const TITLES = { "": "Dashboard", vms: "VMs", vm: "VM", point: "Point", files: "Files", history: "Versions", changes: "Changes", jobs: "Jobs" };

async function route(ev) {
  if (!sessionStorage.getItem(TOKEN_KEY)) { logout(); return; }
  clearTimeout(pollTimer);
  const seq = ++routeSeq;
  if (!noticeKeep) $("notice").hidden = true;
  noticeKeep = false;
  const navigated = !!ev; // the administrator opened another view
  const { name, params } = parseRoute();
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "");
    a.classList.toggle("active", target === name || (target === "vms" && ["vm", "point", "files", "history", "changes"].includes(name)));
  }
  const views = { "": viewDashboard, vms: viewVMs, vm: viewVM, point: viewPoint, files: viewFiles, history: viewHistory, changes: viewChanges, jobs: viewJobs };
  const view = views[name] || viewDashboard;
  document.title = (TITLES[name] || "Dashboard") + " · cairn console";
  let first = true, down = false;
  // show draws the view; it reports whether serve answered.
  const show = async () => {
    try {
      const node = await view(params);
      if (seq !== routeSeq) return true;
      const key = first ? null : focusKey();
      $("banner").hidden = true;
      $("view").replaceChildren(node);
      const h = $("view").querySelector("h1");
      if (h) h.tabIndex = -1; // focusable by script (not by Tab)
      // A new view: the keyboard and screen readers start at its title.
      if (first && navigated) { if (h) h.focus({ preventScroll: true }); } else focusFrom(key);
      first = false;
      return true;
    } catch (e) {
      if (seq !== routeSeq || e.status === 401) return true;
      $("banner").hidden = false;
      $("banner").textContent = e.message;
      return e.status !== 0;
    }
  };
  down = !await show();
  // Polled views redraw every POLL_MS; any view retries while serve does
  // not answer, and redraws once it does again.
  if ((view.poll || down) && seq === routeSeq) {
    const again = async () => {
      if (seq !== routeSeq) return;
      const ok = await show();
      if (seq === routeSeq && (view.poll || !ok)) pollTimer = setTimeout(again, POLL_MS);
    };
    pollTimer = setTimeout(again, POLL_MS);
  }
}

// ---- dashboard ----------------------------------------------------------

// STATUS is the status the console polls: per VM only what it shows, so
// a site of 1,000 VMs is not 1.7 MB every POLL_MS.
const STATUS = "/api/v1/status?vms=summary";

async function viewDashboard() {
  // The summary form: each VM's latest point cut to what the table shows.
  const [st, repo] = await Promise.all([api(STATUS), api("/api/v1/repository").catch(() => ({}))]);
  st.space = repo.space;
  st.rpo = repo.rpo;
  $("serverinfo").textContent = "cairn " + (st.version || "") + " · " + st.repository;
  const out = el("div", { id: "dashboard" }, el("h1", {}, "Dashboard"));
  if (st.reload_error) {
    out.append(el("p", { class: "error" }, "Configuration reload rejected at " + when(st.reload_error_at) +
      " (the previous configuration stays in force): " + st.reload_error));
  }
  const failedVMs = st.vms.filter(v => v.last_run && v.last_run.state === "failed").length;
  const v = st.verify || {};
  const verifyText = v.running ? "running since " + when(v.last_start)
    : v.error ? "FAILED: " + v.error
    : isSet(v.last_end) ? ((v.bad && v.bad.length) ? v.bad.length + " bad blocks" : "ok") + ", " + bytes(v.bytes_checked) + " " + ago(v.last_end)
    : "not run yet";
  out.append(el("div", { class: "cards" },
    el("div", { class: "card" }, el("div", { class: "muted" }, "VMs"), el("div", { class: "big" }, st.vms.length)),
    el("div", { class: "card" }, el("div", { class: "muted" }, "Running backups"), el("div", { class: "big" }, st.running.length)),
    el("div", { class: "card" }, el("div", { class: "muted" }, "VMs whose last backup failed"), el("div", { class: failedVMs ? "big bad" : "big" }, failedVMs)),
    el("div", { class: "card" }, el("div", { class: "muted" }, "Repository verify"), el("div", { class: v.error || (v.bad && v.bad.length) ? "bad" : "" }, verifyText),
      v.running || !may("verify") ? null : el("button", { type: "button", on: { click: verifyNow } }, "Verify now")),
  ));
  if (st.space) {
    const pct = st.space.size ? Math.round(100 * st.space.used / st.space.size) : 0;
    out.append(el("p", { id: "space" }, "Repository space: ", bytes(st.space.used), " used of ", bytes(st.space.size), " (" + pct + " %), ",
      el("span", { class: pct >= 90 ? "bad" : "" }, bytes(st.space.free) + " free"), " ", el("progress", { max: 100, value: pct })));
  }

  if (st.vcenters && st.vcenters.length) {
    out.append(el("h2", {}, "vCenters"), table(["vCenter", "Last login", "Result"],
      st.vcenters.map(c => [c.name, when(c.checked), c.ok ? el("span", { class: "ok" }, "ok") : el("span", { class: "bad" }, "FAILED: " + (c.error || ""))])));
  }

  out.append(el("h2", {}, "Running backups"), table(["Run", "Job", "VM", "Host", "State", "Attempt", "Since", "Progress"],
    st.running.map(r => [r.id, r.job, r.vm, r.host || "—", state(r.state), r.attempts || "", when(r.start || r.queued),
      progressOf(r)])));

  out.append(el("h2", {}, "Jobs"), table(["Job", "Schedule", "Next run", "Running", "Last end", "Last OK", "Last failed"],
    st.jobs.map(j => [j.name, j.schedule || "—", when(j.next_run) + " " + ago(j.next_run), j.running, when(j.last_end), j.last_ok,
      el("span", { class: j.last_failed ? "bad" : "" }, j.last_failed)]), [3, 5, 6]));

  out.append(el("h2", {}, "VMs"), vmTable(st.vms, st.rpo));

  if (st.notify && st.notify.length) {
    out.append(el("h2", {}, "Notification targets"), table(["Target", "Type", "Sent", "Failed", "Last OK", "Last failure"],
      st.notify.map(n => [n.name, n.type, n.sent, el("span", { class: n.failed ? "bad" : "" }, n.failed), when(n.last_ok),
        n.last_error ? when(n.last_error_time) + ": " + n.last_error : "—"]), [2, 3]));
  }
  out.append(el("p", { class: "muted", id: "refreshed" }, "Refreshed " + new Date().toLocaleTimeString() + " (every " + POLL_MS / 1000 + " s)."));
  return out;
}
viewDashboard.poll = true;

function progressOf(r) {
  const p = r.progress;
  if (!p || !p.total) return r.state === "running" ? "starting" : "";
  const pct = Math.min(100, Math.round(100 * p.done / p.total));
  return el("span", {}, el("progress", { max: 100, value: pct }), " " + pct + " % of " + bytes(p.total) + " (" + p.disk + ")");
}

function vmTable(vms, rpo) {
  const rpoOf = {};
  for (const r of rpo || []) rpoOf[r.vm] = r;
  return table(["VM", "Points", "Latest point", "Consistency", "Last backup", "RPO"],
    vms.map(v => {
      const lr = v.last_run;
      const r = v.rpo || rpoOf[v.name];
      // Unacknowledged suspicious changes (docs/backup.md): a badge.
      const susp = v.suspicious && v.suspicious.length ? el("span", { class: "bad",
        title: "suspicious changes in " + v.suspicious.join(", ") + (v.last_clean ? "; last clean point " + v.last_clean : "") }, " suspicious") : null;
      return [el("span", {}, link("vm", { name: v.name }, v.name), susp), v.points,
        v.latest ? link("point", { vm: v.name, point: v.latest.id }, when(v.latest.time)) : "—",
        v.latest ? v.latest.consistency : "—",
        lr ? el("span", {}, state(lr.state), " " + when(lr.end || lr.start), lr.error ? el("div", { class: "error" }, lr.error) : null)
          : (v.unselected ? el("span", { class: "muted" }, "no job backs it up any more") : "—"),
        r ? el("span", { class: r.breached ? "bad" : "ok" }, (r.breached ? "BREACHED" : "ok") + " (" + r.rpo + ")") : "—"];
    }), [1]);
}

// ---- VMs and points -----------------------------------------------------

async function viewVMs() {
  // The summary form: each VM's latest point cut to what the table shows.
  const [st, repo] = await Promise.all([api(STATUS), api("/api/v1/repository").catch(() => ({}))]);
  return el("div", {}, el("h1", {}, "VMs"), vmTable(st.vms, repo.rpo));
}

async function offsiteCopies(vm) {
  // Points known to be offsite: the remotes that replications went to.
  const out = {};
  let reps;
  try { reps = (await api("/api/v1/replications")).replications || []; } catch (e) { return out; }
  const remotes = new Set(reps.map(r => r.remote).filter(Boolean));
  for (const rem of remotes) {
    try {
      const ans = await api("/api/v1/remotes/" + enc(rem) + "/points?vm=" + enc(vm));
      for (const p of ans.points || []) (out[p.id] = out[p.id] || []).push(rem);
    } catch (e) { /* an unreachable remote shows nothing */ }
  }
  return out;
}

async function viewVM(params) {
  const vm = params.get("name");
  const [pts, offsite] = await Promise.all([api("/api/v1/points?vm=" + enc(vm)), offsiteCopies(vm)]);
  pts.sort((a, b) => (a.time < b.time ? 1 : -1));
  const boots = await Promise.all(pts.slice(0, 50).map(p =>
    api("/api/v1/points/" + enc(vm) + "/" + enc(p.id) + "/boot").catch(() => null)));
  const rows = pts.map((p, i) => {
    const size = p.disks.reduce((s, d) => s + d.size, 0);
    const stored = p.disks.reduce((s, d) => s + (d.stored_bytes || 0), 0);
    const b = boots[i];
    // The suspicious-change verdict kept with the point (docs/backup.md): a
    // badge, or "acknowledged" once it was acknowledged as a false alarm.
    const susp = p.verdict && p.verdict.status === "suspicious" ? (p.acknowledged ?
      el("span", { class: "muted", title: p.verdict.reason + "; acknowledged by " + (p.acknowledged.by || "?") + (p.acknowledged.note ? ": " + p.acknowledged.note : "") }, " acknowledged") :
      el("span", { class: "bad", title: p.verdict.reason || "" }, " suspicious")) : null;
    return [el("span", {}, link("point", { vm: vm, point: p.id }, p.id), susp), when(p.time), p.consistency, bytes(size), bytes(stored),
      b ? el("span", { class: b.verdict === "booted" ? "ok" : "bad", title: (b.reason || "") + (b.checks || []).map(c => "\n" + (c.passed ? "passed " : "FAILED ") + c.spec + ": " + c.detail).join("") }, b.verdict || "?") : "—",
      (offsite[p.id] || []).join(", ") || "—",
      link("files", { vm: vm, point: p.id }, "browse files")];
  });
  return el("div", {}, el("div", { class: "crumbs" }, link("vms", {}, "VMs"), " / ", vm),
    el("h1", {}, vm),
    may("backup") ? el("div", { class: "toolbar" }, el("button", { type: "button", on: { click: () => backupNow(vm) } }, "Back up now")) : null,
    table(["Point", "Time", "Consistency", "Size", "Stored", "Boot check", "Offsite", ""], rows, [3, 4]));
}

async function viewPoint(params) {
  const vm = params.get("vm"), ref = params.get("point");
  const [pts, fss] = await Promise.all([api("/api/v1/points?vm=" + enc(vm)),
    api("/api/v1/points/" + enc(vm) + "/" + enc(ref) + "/filesystems").catch(e => ({ error: e.message }))]);
  // The point as the API resolves it: an id, a generation or latest.
  const p = ref === "latest" ? pts.reduce((a, b) => (!a || b.time > a.time ? b : a), null)
    : pts.find(x => x.id === ref || String(x.generation) === ref);
  if (!p) throw new APIError(404, "no point " + ref + " of VM " + vm);
  const id = p.id;
  const out = el("div", {}, el("div", { class: "crumbs" }, link("vms", {}, "VMs"), " / ", link("vm", { name: vm }, vm), " / ", id),
    el("h1", {}, vm + " at " + when(p.time)),
    el("p", {}, "Consistency: " + p.consistency + " · generation " + p.generation + " · committed " + when(p.committed)));
  out.append(el("h2", {}, "Disks"), table(["Disk", "Size", "Stored by this point", "Read", "Full", ""],
    p.disks.map(d => [d.name, bytes(d.size), bytes(d.stored_bytes), bytes(d.read_bytes), d.full ? "full" + (d.full_reason ? " (" + d.full_reason + ")" : "") : "incremental", ""]), [1, 2, 3]));
  out.append(el("h2", {}, "Guest filesystems"));
  if (fss.error) out.append(el("p", { class: "error" }, fss.error));
  else out.append(fsTable(vm, id, fss.filesystems), el("p", {}, link("changes", { vm: vm, point: id }, "Compare with the previous point")));
  out.append(el("h2", {}, "Restore"), restoreForm(vm, id));
  out.append(el("h2", {}, "Instant recovery"), instantForm(vm, id));
  return out;
}

function fsTable(vm, id, fss) {
  return table(["Filesystem", "Type", ""], fss.map(f => [
    f.error ? f.filesystem : link("files", { vm: vm, point: id, fs: f.filesystem, path: "/" }, f.filesystem),
    f.fs_type || "—",
    f.error ? el("span", { class: f.no_filesystem ? "muted" : "error" }, f.error) : ""]));
}

// ---- files --------------------------------------------------------------

async function viewFiles(params) {
  const vm = params.get("vm"), id = params.get("point"), fsName = params.get("fs");
  const base = "/api/v1/points/" + enc(vm) + "/" + enc(id);
  const crumbs = el("div", { class: "crumbs" }, link("vms", {}, "VMs"), " / ", link("vm", { name: vm }, vm), " / ",
    link("point", { vm: vm, point: id }, id), " / ");
  if (!fsName) {
    const fss = await api(base + "/filesystems");
    return el("div", {}, crumbs, el("h1", {}, "Files of " + vm + " at " + id), fsTable(vm, id, fss.filesystems));
  }
  const path = params.get("path") || "/";
  const listURL = base + "/files?fs=" + enc(fsName) + "&path=" + enc(path);
  const ans = await api(listURL + "&limit=" + PAGE);
  // The point as the server resolved it (latest, a generation: its id).
  crumbs.children[2].textContent = ans.point;
  crumbs.append(link("files", { vm: vm, point: id }, "fs"), " / ", link("files", { vm: vm, point: id, fs: fsName, path: "/" }, fsName));
  let acc = "";
  for (const part of ans.path.split("/").filter(Boolean)) {
    acc += "/" + part;
    crumbs.append(" / ", link("files", { vm: vm, point: id, fs: fsName, path: acc }, part));
  }
  const out = el("div", { id: "files" }, crumbs,
    el("h1", {}, ans.path + " ", el("span", { class: "muted" }, "(" + ans.fs_type + ")")),
    el("div", { class: "toolbar" },
      el("button", { type: "button", on: { click: () => download(vm, id, fsName, ans.path) } },
        ans.entry.kind === "dir" ? "Download this directory (tar)" : "Download"),
      " ", link("changes", { vm: vm, point: ans.point, fs: fsName, path: ans.path }, "Compare with the previous point")));
  if (ans.entry.kind !== "dir") {
    out.append(el("div", { class: "scroll" }, entryTable([ans.entry], () => null, vm, id, fsName, ans.path)));
    return out;
  }
  const child = name => (ans.path === "/" ? "/" : ans.path + "/") + name;
  out.append(pagedEntries(ans, listURL, e => child(e.name), vm, id, fsName));
  return out;
}

// PAGE is the number of directory entries asked for and drawn at once:
// a directory of 500,000 files stays a page of PAGE rows, from the
// server a page at a time (a filter, sent to the server, finds the
// others).
const PAGE = 200;

// pagedEntries is a directory's listing a page at a time, the first
// page first (its answer), with a filter on names that the server
// applies to the whole directory, Previous and Next (the server's
// cursors) and a count of the entries.
function pagedEntries(first, listURL, pathOf, vm, id, fsName) {
  let ans = first, page = 0, cursors = [""], filterText = "", seq = 0, timer = null;
  const count = el("span", { "aria-live": "polite" });
  const filter = el("input", { type: "search", id: "filter", size: 24, placeholder: "part of a name" });
  const prev = el("button", { type: "button" }, "Previous");
  const next = el("button", { type: "button" }, "Next");
  const box = el("div", { class: "scroll" });
  const draw = () => {
    const ents = ans.entries || [];
    const total = ans.total || 0, matched = ans.matched || 0, from = (ans.offset || 0) + 1, to = (ans.offset || 0) + ents.length;
    box.replaceChildren(entryTable(ents, pathOf, vm, id, fsName));
    count.textContent = (filterText ? matched + " of " + total + " entries match" : total + " entries") +
      (matched > ents.length && ents.length ? ", " + from + "–" + to + " shown" : "");
    prev.hidden = next.hidden = page === 0 && !ans.next;
    prev.disabled = page === 0;
    next.disabled = !ans.next;
  };
  // load asks for page `page` (after its cursor) with the filter; only
  // the answer to the latest request is drawn.
  const load = async () => {
    const my = ++seq;
    let u = listURL + "&limit=" + PAGE;
    if (cursors[page]) u += "&after=" + enc(cursors[page]);
    if (filterText) u += "&filter=" + enc(filterText);
    let a;
    try { a = await api(u); } catch (e) {
      if (my === seq && e.status !== 401) notice("Listing refused: " + e.message, true);
      return;
    }
    if (my !== seq) return;
    ans = a;
    draw();
  };
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { filterText = filter.value; page = 0; cursors = [""]; load(); }, 200);
  });
  prev.addEventListener("click", () => { if (page > 0) { page--; load(); } });
  next.addEventListener("click", () => { if (ans.next) { cursors[page + 1] = ans.next; page++; load(); } });
  draw();
  return el("div", {}, el("div", { class: "pager" }, el("label", {}, "Filter names", filter), count, prev, next), box);
}

function entryTable(entries, pathOf, vm, id, fsName, single) {
  return bareTable(["Name", "Mode", "Owner", "Size", "Modified", ""], entries.map(e => {
    const p = single || pathOf(e);
    const name = e.kind === "dir" ? link("files", { vm: vm, point: id, fs: fsName, path: p }, e.name + "/")
      : el("span", { class: "mono" }, e.name);
    const extra = [];
    if ((e.kind === "file" || e.kind === "dir") && may("download")) {
      extra.push(el("button", { type: "button", "aria-label": (e.kind === "dir" ? "Download as tar: " : "Download: ") + e.name,
        on: { click: () => download(vm, id, fsName, p) } }, e.kind === "dir" ? "tar" : "download"));
    }
    if (e.kind === "file") extra.push(" ", el("a", { href: href("history", { vm: vm, fs: fsName, path: p }), "aria-label": "Versions of " + e.name }, "versions"));
    return [el("span", {}, name, e.target ? el("span", { class: "muted" }, " → " + e.target) : null, e.error ? el("div", { class: "error" }, e.error) : null),
      el("span", { class: "mono" }, e.mode), e.uid !== undefined ? e.uid + ":" + e.gid : "—",
      e.kind === "dir" ? "" : bytes(e.size), when(e.mtime), el("span", {}, extra)];
  }), [3]);
}

async function download(vm, id, fsName, path) {
  try {
    const t = await api("/api/v1/downloads", { method: "POST", json: { vm: vm, point: id, fs: fsName, path: path } });
    const a = el("a", { href: t.url, download: t.name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    if (e.status !== 401) notice("Download refused: " + e.message, true);
  }
}

// ---- one file's versions ------------------------------------------------

async function viewHistory(params) {
  const vm = params.get("vm"), fsName = params.get("fs"), path = params.get("path");
  const h = await api("/api/v1/vms/" + enc(vm) + "/history?fs=" + enc(fsName) + "&path=" + enc(path));
  const dir = path.replace(/\/[^/]*$/, "") || "/";
  const out = el("div", { id: "history" }, el("div", { class: "crumbs" }, link("vms", {}, "VMs"), " / ", link("vm", { name: vm }, vm), " / ",
    link("files", { vm: vm, point: "latest", fs: fsName, path: dir }, fsName + " " + dir), " / versions"),
    el("h1", {}, "Versions of " + path + " in " + fsName));
  for (const f of h.filesystems || []) {
    out.append(el("h2", {}, f.filesystem), table(["From", "To", "Points", "Version", "Size", "Modified", "SHA-256", ""],
      (f.runs || []).map(r => [when(r.first_time), when(r.last_time), r.points,
        r.version ? "v" + r.version : (r.error ? el("span", { class: "error" }, r.error) : "absent"),
        r.entry ? bytes(r.entry.size) : "", r.entry ? when(r.entry.mtime) : "",
        r.sha256 ? el("span", { class: "mono", title: r.sha256 }, r.sha256.slice(0, 16) + "…") : "",
        r.version && r.entry && r.entry.kind === "file" && may("download") ? el("button", { type: "button", on: { click: () => download(vm, r.last_point, fsName, path) } }, "download") : ""])));
  }
  return out;
}

// ---- changes since the previous point ----------------------------------

// viewChanges lists what changed in the guest files from the point
// before (or params "against") to the point: GET .../diff.
async function viewChanges(params) {
  const vm = params.get("vm"), id = params.get("point"), fsName = params.get("fs") || "", path = params.get("path") || "/";
  let url = "/api/v1/points/" + enc(vm) + "/" + enc(id) + "/diff?path=" + enc(path);
  if (fsName) url += "&fs=" + enc(fsName);
  if (params.get("against")) url += "&against=" + enc(params.get("against"));
  const d = await api(url);
  const out = el("div", { id: "changes" }, el("div", { class: "crumbs" }, link("vms", {}, "VMs"), " / ", link("vm", { name: vm }, vm), " / ",
    link("point", { vm: vm, point: d.point }, d.point), " / changes"),
    el("h1", {}, "Changes in " + (fsName ? fsName + " " : "") + d.path + " from " + d.against + " to " + d.point));
  const kinds = ["added", "deleted", "modified", "type", "metadata"];
  const k = d.summary.kinds || {};
  out.append(el("p", {}, kinds.map(n => (k[n] ? k[n].count : 0) + " " + n).join(" · ") +
    (d.summary.encrypted && d.summary.encrypted.length ? " · " + d.summary.encrypted.length + " encrypted-looking" : "")));
  for (const f of d.filesystems.filter(f => f.state !== "compared")) {
    out.append(el("p", { class: f.state === "unreadable" ? "error" : "muted" }, f.filesystem + ": " + (f.error || "only in one point (" + f.state + ")")));
  }
  const side = c => c.new || c.old || {};
  out.append(table(["Change", "Filesystem", "Path", "What", "Size", ""],
    d.changes.map(c => [c.kind, c.filesystem, c.path,
      c.kind === "type" ? c.old.type + " → " + c.new.type : (c.fields || []).join(", ") || side(c).type,
      side(c).type === "file" ? (c.old && c.new ? bytes(c.old.size) + " → " + bytes(c.new.size) : bytes(side(c).size)) : "",
      c.encrypted ? el("span", { class: "error" }, "encrypted?") : (c.error ? el("span", { class: "error" }, c.error) : "")]), [4]));
  if (d.truncated) out.append(el("p", { class: "muted" }, "The first " + d.limit + " changes; `cairn diff` lists them all."));
  return out;
}

// ---- jobs and actions ---------------------------------------------------

async function viewJobs() {
  const [jobs, restores, reps] = await Promise.all([api("/api/v1/jobs?limit=200"), api("/api/v1/restores").catch(() => null),
    api("/api/v1/replications").catch(() => null)]);
  const out = el("div", { id: "jobs" }, el("h1", {}, "Jobs"));
  out.append(el("h2", {}, "Runs of this server"), table(["Run", "Job", "VM", "Trigger", "State", "Start", "End", "Point", "Read", "Stored", "Error"],
    jobs.runs.slice().reverse().map(r => [r.id, r.job, r.vm, r.trigger, state(r.state), when(r.start), when(r.end), r.point || "—",
      bytes(r.bytes_read), bytes(r.bytes_written), r.error ? el("span", { class: "error" }, r.error) : ""]), [8, 9]));
  if (restores) {
    const list = restores.restores || restores;
    if (Array.isArray(list)) {
      out.append(el("h2", {}, "Restores"), table(["Id", "VM", "Point", "New VM", "State", "Start", "End", "Error"],
        list.slice().reverse().map(r => [r.id, r.request.vm, r.request.point, (r.result && r.result.vm) || r.request.name || "—", state(r.state),
          when(r.start), when(r.end), r.error ? el("span", { class: "error" }, r.error) : ""])));
    }
  }
  const inst = await instantSection();
  if (inst) out.append(inst);
  if (reps && reps.replications && reps.replications.length) {
    out.append(el("h2", {}, "Replications and remote verifies"), table(["Id", "Job", "Remote", "Kind", "State", "Start", "End", "Points copied", "Uploaded", "Error"],
      reps.replications.slice().reverse().map(r => [r.id, r.job, r.remote, r.kind, state(r.state), when(r.start), when(r.end),
        r.points_replicated, bytes(r.bytes_uploaded), r.error ? el("span", { class: "error" }, r.error) : ""]), [7, 8]));
  }
  out.append(el("h2", {}, "History (every process on the repository)"), table(["Id", "Kind", "VM", "State", "Start", "End", "Point", "Read", "Stored", "Error"],
    jobs.history.slice().reverse().map(r => [r.id, r.kind || "backup", r.vm || (r.vms || []).join(", "), state(r.state), when(r.start), when(r.end), r.point || "—",
      bytes(r.bytes_read), bytes(r.bytes_written), r.error ? el("span", { class: "error" }, r.error) : ""]), [7, 8]));
  return out;
}
viewJobs.poll = true;

async function verifyNow() {
  if (!await confirmAction("Verify every block of the repository now? It reads the whole repository.", "Verify now")) return;
  try {
    await api("/api/v1/verify", { method: "POST", json: {} });
    route();
  } catch (e) {
    if (e.status !== 401) notice("Verify refused: " + e.message, true);
  }
}

async function backupNow(vm) {
  if (!await confirmAction("Start a backup of " + vm + " now?", "Back up now")) return;
  try {
    const r = await api("/api/v1/jobs", { method: "POST", json: { vm: vm } });
    notice("Backup of " + vm + " " + (r.deduplicated ? "already queued" : "queued") + ": run " + r.id + " (job " + r.job + "). Jobs below follows it.");
    noticeKeep = true;
    location.hash = href("jobs");
  } catch (e) {
    if (e.status !== 401) notice("Backup refused: " + e.message, true);
  }
}

function restoreForm(vm, id) {
  if (!may("restore_vm")) return el("p", { class: "muted" }, "Restoring a whole VM needs an admin token (this one is " + WHO.role + ").");
  const name = el("input", { type: "text", "aria-label": "Name of the new VM", placeholder: "name of the new VM (default: " + vm + "-restored-…)", size: 40 });
  const ds = el("input", { type: "text", "aria-label": "Datastore", placeholder: "datastore (optional)", size: 20 });
  const power = el("input", { type: "checkbox" });
  const go = async ev => {
    ev.preventDefault();
    const req = { vm: vm, point: id };
    if (name.value) req.name = name.value;
    if (ds.value) req.datastore = ds.value;
    if (power.checked) req.power_on = true;
    if (!await confirmAction("Restore " + vm + " as it was at point " + id + " as a new VM" + (req.name ? " named " + req.name : "") +
      " in the vCenter? Nothing existing is replaced.", "Restore")) return;
    try {
      const r = await api("/api/v1/restores", { method: "POST", json: req });
      notice("Restore of " + vm + " started: " + (r.id || JSON.stringify(r)) + ". Jobs below follows it.");
      noticeKeep = true;
      location.hash = href("jobs");
    } catch (e) {
      if (e.status !== 401) notice("Restore refused: " + e.message, true);
    }
  };
  return el("form", { class: "toolbar", on: { submit: go } }, name, ds, el("label", {}, power, " power on"),
    el("button", { type: "submit" }, "Restore as a new VM"));
}

// ---- instant recovery ---------------------------------------------------

// instantForm starts an instant recovery session of a point (admin only):
// the VM runs from the repository over NFS until it is migrated or stopped.
function instantForm(vm, id) {
  if (!may("restore_vm")) return el("p", { class: "muted" }, "Instant recovery needs an admin token (this one is " + WHO.role + ").");
  const name = el("input", { type: "text", "aria-label": "Name of the instant VM", placeholder: "name of the VM (default: the recorded name)", size: 30 });
  const host = el("input", { type: "text", "aria-label": "ESXi host", placeholder: "ESXi host (optional)", size: 18 });
  const nfs = el("input", { type: "text", "aria-label": "NFS address of this machine", placeholder: "this machine's IP for ESXi (default: config)", size: 24 });
  const target = el("input", { type: "text", "aria-label": "Datastore to migrate to", placeholder: "migrate to datastore (optional)", size: 22 });
  const power = el("input", { type: "checkbox", checked: true });
  const go = async ev => {
    ev.preventDefault();
    const req = { vm: vm, point: id };
    if (name.value) req.name = name.value;
    if (host.value) req.host = host.value;
    if (nfs.value) req.nfs_host = nfs.value;
    if (target.value) req.migrate_to = target.value;
    if (power.checked) req.power_on = true;
    if (!await confirmAction("Run " + vm + " as it was at point " + id + " on vSphere straight from the backup" + (req.name ? " as " + req.name : "") +
      "? Its writes go to this machine until you migrate or stop it.", "Start instant recovery")) return;
    try {
      const r = await api("/api/v1/instant", { method: "POST", json: req });
      notice("Instant recovery of " + vm + " starting: session " + r.id + ". Jobs lists it with Migrate and Stop.");
      noticeKeep = true;
      location.hash = href("jobs");
    } catch (e) {
      if (e.status !== 401) notice("Instant recovery refused: " + e.message, true);
    }
  };
  return el("form", { class: "toolbar", on: { submit: go } }, name, host, nfs, target, el("label", {}, power, " power on"),
    el("button", { type: "submit" }, "Instant recovery"));
}

// instantSection is the jobs view's table of instant recovery sessions,
// with Migrate and Stop for the running ones (admin); null when there are none.
async function instantSection() {
  const list = await api("/api/v1/instant").catch(() => null);
  if (!Array.isArray(list) || !list.length) return null;
  const acts = r => {
    if (r.state !== "running" || !may("restore_vm")) return "";
    return el("span", {}, el("button", { type: "button", on: { click: () => instantAction(r, "migrate") } }, "Migrate"), " ",
      el("button", { type: "button", on: { click: () => instantAction(r, "stop") } }, "Stop"));
  };
  return el("div", { id: "instant" }, el("h2", {}, "Instant recovery sessions"),
    table(["Id", "VM", "Point", "Running as", "State", "Datastore", "Written", "Started", "End", "Error", ""],
      list.slice().reverse().map(r => [r.id, r.request.vm, r.point, r.vm || r.request.name || "—", state(r.state),
        r.migrated_to ? "→ " + r.migrated_to : (r.datastore || "—"), bytes(r.bytes_written), when(r.started), when(r.end),
        r.error ? el("span", { class: "error" }, r.error) : "", acts(r)]), [6]));
}

async function instantAction(r, action) {
  const vm = r.vm || r.request.vm;
  let body = {};
  if (action === "migrate") {
    let ds = r.request.migrate_to || "";
    if (!ds) {
      ds = (window.prompt("Datastore to move " + vm + " to (Storage vMotion):") || "").trim();
      if (!ds) return;
    }
    if (!await confirmAction("Move " + vm + " to datastore " + ds + " while it runs, then end the instant recovery session? The VM stays.", "Migrate")) return;
    body = { datastore: ds };
  } else if (!await confirmAction("Stop the instant recovery of " + vm + "? The VM is powered off and deleted; what it wrote is gone.", "Stop")) return;
  try {
    await api("/api/v1/instant/" + encodeURIComponent(r.id) + "/" + action, { method: "POST", json: body });
    notice((action === "migrate" ? "Migrating " : "Stopping ") + vm + ": session " + r.id + ".");
    route();
  } catch (e) {
    if (e.status !== 401) notice((action === "migrate" ? "Migration" : "Stop") + " refused: " + e.message, true);
  }
}

// ---- start --------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  takeTokenFromFragment();
  $("loginform").addEventListener("submit", ev => { ev.preventDefault(); login($("token").value.trim()); });
  $("logout").addEventListener("click", () => logout());
  window.addEventListener("hashchange", ev => { if (location.hash.startsWith("#token=")) takeTokenFromFragment(); route(ev); });
  if (sessionStorage.getItem(TOKEN_KEY)) showApp(); else logout();
});
