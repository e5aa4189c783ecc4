/* portico's web page: a client of the admin API that serves it (same
 * origin).  Names, domains, audit details and upstream answers are hostile
 * input: every node is built with createElement and text, never parsed
 * from markup.  The token stays in sessionStorage, for this tab only. */
"use strict";

const TOKEN_KEY = "portico.token";
const AUDIT_LIMIT = 1000;

/* An answer other than 2xx: its status and the API's error object
 * {code, message, details}, when it has one. */
class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e && e.message ? e.message : "HTTP " + status);
    this.status = status;
    this.body = body;
    this.error = e || null;
  }
}

/* Every call goes through here.  The pattern is the server's route
 * ("/proxies/{}"); args fill its {} in order, escaped. */
async function api(method, pattern, args = [], body = undefined) {
  let i = 0;
  const path = pattern.replace(/\{\}/g, () => encodeURIComponent(String(args[i++])));
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/* el("td", {className: "x"}, "text", node): strings become text nodes. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function button(label, onClick) {
  return el("button", { type: "button", onclick: onClick }, label);
}

const $ = (id) => document.getElementById(id);

function say(text) {
  $("status").textContent = text;
}

/* Shows a failed call: the API's code, message, each bad field and the
 * other details (the correlation id finds it in the logs and the audit). */
function showError(err) {
  const box = $("error");
  box.replaceChildren();
  const e = err instanceof ApiError ? err.error : null;
  if (e) {
    box.append(el("strong", {}, e.code), " ", e.message);
    const list = el("ul");
    const details = e.details || {};
    for (const [field, why] of Object.entries(details.fields || {})) {
      list.append(el("li", {}, el("code", {}, field), " ", String(why)));
    }
    for (const [key, value] of Object.entries(details)) {
      if (key === "fields") continue;
      list.append(el("li", {}, key + ": ", typeof value === "string" ? value : JSON.stringify(value)));
    }
    box.append(list);
  } else {
    box.append(String(err && err.message ? err.message : err));
  }
  if (err instanceof ApiError && err.status === 401) box.append(el("p", {}, "Enter the API token above."));
  box.hidden = false;
}

/* Runs an action, reporting its failure instead of losing it. */
async function attempt(action) {
  $("error").hidden = true;
  try {
    await action();
  } catch (err) {
    showError(err);
  }
}

/* One row per item; cells(item) gives the row's cells (text or nodes). */
function fillRows(tbodyId, items, cells) {
  const tbody = $(tbodyId);
  const columns = tbody.parentNode.tHead.rows[0].cells.length;
  tbody.replaceChildren(...items.map((item) => el("tr", {}, ...cells(item).map((c) => el("td", {}, c)))));
  if (items.length === 0) tbody.append(el("tr", {}, el("td", { colSpan: columns, className: "note" }, "none")));
}

function hostPort(u) {
  return (u.host.includes(":") ? "[" + u.host + "]" : u.host) + ":" + u.port;
}

/* ---- proxies ---- */

let editing = null; // the proxy the form edits, as listed; null: a new one

async function loadProxies() {
  const proxies = await api("GET", "/proxies");
  fillRows("proxy-rows", proxies, (p) => [
    p.droplet_name,
    p.domain,
    p.path_prefix,
    p.upstreams.map((u) => hostPort(u) + (u.health ? " " + u.health.state : "")).join(", "),
    p.ssl_enabled ? "on" : p.enable_ssl ? "no certificate yet" : "off",
    el("span", { className: "health-" + p.last_health_status }, p.last_health_status),
    p.source,
    el("span", {}, button("Edit", () => editProxy(p)), " ", button("Delete", () => deleteProxy(p))),
  ]);
}

function field(form, name) {
  return form.elements.namedItem(name);
}

const FLAGS = ["require_healthy", "enable_ssl", "strip_prefix", "websocket"];

function resetProxyForm() {
  const form = $("proxy-form");
  editing = null;
  form.reset();
  field(form, "name").readOnly = false;
  $("proxy-form-title").textContent = "New proxy";
  $("p-more").hidden = true;
}

function editProxy(p) {
  const form = $("proxy-form");
  editing = p;
  field(form, "name").value = p.droplet_name;
  field(form, "name").readOnly = true;
  field(form, "domain").value = p.domain;
  field(form, "path_prefix").value = p.path_prefix;
  field(form, "upstream_host").value = p.upstreams[0].host;
  field(form, "upstream_port").value = p.upstreams[0].port;
  for (const flag of FLAGS) field(form, flag).checked = p[flag];
  $("proxy-form-title").textContent = "Edit " + p.droplet_name;
  const more = p.upstreams.length - 1;
  $("p-more").textContent = more + " more upstream(s) kept: " + p.upstreams.slice(1).map(hostPort).join(", ");
  $("p-more").hidden = more === 0;
  field(form, "domain").focus();
}

/* The request form of a listed proxy.  PUT replaces the whole spec, so an
 * edit starts from it: what the form does not show (more upstreams,
 * weights, the health check, headers, DNS, body size) stays as it was. */
function specOf(p) {
  const h = p.health_check;
  return {
    domain: p.domain,
    path_prefix: p.path_prefix,
    strip_prefix: p.strip_prefix,
    upstreams: p.upstreams.map((u) => ({ host: u.host, port: u.port, weight: u.weight })),
    require_healthy: p.require_healthy,
    enable_ssl: p.enable_ssl,
    health_check: {
      path: h.path,
      interval_ms: h.interval_ms,
      timeout_ms: h.timeout_ms,
      healthy_threshold: h.healthy_threshold,
      unhealthy_threshold: h.unhealthy_threshold,
    },
    websocket: p.websocket,
    security_headers: p.security_headers,
    dns: p.dns,
    max_body_size: p.max_body_size,
  };
}

async function saveProxy(form) {
  const name = field(form, "name").value.trim();
  const host = field(form, "upstream_host").value.trim();
  const port = Number(field(form, "upstream_port").value);
  let body;
  if (editing) {
    body = specOf(editing);
    body.upstreams[0].host = host;
    body.upstreams[0].port = port;
  } else {
    body = { upstream_host: host, upstream_port: port };
  }
  body.domain = field(form, "domain").value.trim();
  body.path_prefix = field(form, "path_prefix").value.trim() || "/";
  for (const flag of FLAGS) body[flag] = field(form, flag).checked;
  const p = await api("PUT", "/proxies/{}", [name], body);
  say(p.apply.changed ? "Saved " + p.droplet_name + " (revision " + p.revision + ")." : "Nothing changed.");
  resetProxyForm();
  await loadProxies();
}

async function deleteProxy(p) {
  if (!confirm("Delete the proxy " + p.droplet_name + " (" + p.domain + p.path_prefix + ")?")) return;
  await attempt(async () => {
    await api("DELETE", "/proxies/{}", [p.droplet_name]);
    say("Deleted " + p.droplet_name + ".");
    await loadProxies();
  });
}

/* ---- certificates ---- */

async function loadCertificates() {
  const certs = await api("GET", "/certificates");
  fillRows("cert-rows", certs, (c) => [
    c.domain,
    c.issuer,
    c.not_after,
    c.source,
    c.used_by.join(", "),
    button("Delete", () => deleteCertificate(c)),
  ]);
}

async function uploadCertificate(form) {
  const domain = field(form, "domain").value.trim();
  const c = await api("PUT", "/certificates/{}", [domain], {
    certificate: field(form, "certificate").value,
    key: field(form, "key").value,
  });
  // The key does not stay in the page longer than the upload.
  form.reset();
  say("Certificate for " + c.domain + " valid until " + c.not_after + ".");
  await loadCertificates();
}

async function deleteCertificate(c) {
  if (!confirm("Delete the certificate of " + c.domain + "?")) return;
  await attempt(async () => {
    await api("DELETE", "/certificates/{}", [c.domain]);
    say("Deleted the certificate of " + c.domain + ".");
    await loadCertificates();
  });
}

/* ---- revisions, audit, health ---- */

async function loadRevisions() {
  const revisions = await api("GET", "/revisions");
  fillRows("revision-rows", revisions, (r) => [
    r.revision,
    r.time,
    r.actor,
    r.action,
    r.summary,
    r.proxies,
    button("Restore", () => restoreRevision(r)),
  ]);
}

async function restoreRevision(r) {
  if (!confirm("Restore the proxies of revision " + r.revision + "?")) return;
  await attempt(async () => {
    const done = await api("POST", "/revisions/{}/restore", [r.revision], {});
    say(done.apply.changed ? "Restored revision " + done.restored + " as revision " + done.revision + "."
                           : "Revision " + done.restored + " is the current state.");
    await loadRevisions();
  });
}

/* The API lists entries oldest first: from `since` when given, else the
 * newest ones.  The page shows the newest first. */
async function loadAudit() {
  const back = Number($("audit-since").value);
  const entries = back
    ? await api("GET", "/audit?since={}&limit={}", [Date.now() - back, AUDIT_LIMIT])
    : await api("GET", "/audit?limit={}", [AUDIT_LIMIT]);
  const note = $("audit-note");
  note.textContent = back
    ? "The first " + AUDIT_LIMIT + " entries of this period: pick a shorter one for the newest."
    : "The newest " + AUDIT_LIMIT + " entries.";
  note.hidden = entries.length < AUDIT_LIMIT;
  fillRows("audit-rows", entries.reverse(), (a) => [
    a.time,
    a.actor,
    a.action,
    a.droplet_name,
    a.domain,
    el("span", { className: "result-" + a.result }, a.result),
    a.error_code,
    el("code", {}, a.correlation_id),
    a.detail,
  ]);
}

async function loadHealth() {
  let h;
  try {
    h = await api("GET", "/proxy-manager/health");
  } catch (err) {
    // Unhealthy is a 500 that still carries the report.
    if (!(err instanceof ApiError) || !err.body || !err.body.status) throw err;
    h = err.body;
  }
  const rows = [
    ["Status", h.status],
    ["Version", h.version],
    ["Engine", h.engine],
    ["Proxies", h.proxies],
    ["Revision", h.revision],
    ["Up for", h.uptime_s + " s"],
    ["Store", h.checks.store.ok ? "ok" : "failing"],
    ["Certificates", h.ssl.certificates + " (" + h.ssl.expired + " expired)"],
    ["Expiring within 14 days", h.ssl.expiring_within_14_days.map((c) => c.domain).join(", ") || "none"],
    ["Soonest expiry", h.ssl.soonest_expiry || "none"],
  ];
  $("health-summary").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("health-raw").textContent = JSON.stringify(h, null, 2);
}

/* ---- wiring ---- */

const SECTIONS = {
  proxies: loadProxies,
  certificates: loadCertificates,
  revisions: loadRevisions,
  audit: loadAudit,
  health: loadHealth,
};
let current = "proxies";

function show(section) {
  current = section;
  for (const name of Object.keys(SECTIONS)) {
    $(name).hidden = name !== section;
    $("tab-" + name).setAttribute("aria-selected", String(name === section));
  }
  attempt(SECTIONS[section]);
}

/* A form's submit runs action(form) instead of navigating (which the
 * page's form-action 'none' refuses anyway). */
function onSubmit(id, action) {
  $(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    attempt(() => action(ev.target));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  onSubmit("token-form", async () => {
    const token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    show(current);
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
  });
  for (const name of Object.keys(SECTIONS)) $("tab-" + name).addEventListener("click", () => show(name));
  $("reload").addEventListener("click", () => show(current));
  $("audit-since").addEventListener("change", () => attempt(loadAudit));
  $("proxy-new").addEventListener("click", resetProxyForm);
  onSubmit("proxy-form", saveProxy);
  onSubmit("cert-form", uploadCertificate);
  onSubmit("audit-form", loadAudit);
  show(current);
});
