// The dashboard: a tenant's jobs (live progress, images/s, ETA, error codes, duplicate groups, dead-lettered chunks
// with replay, cancel) and the operator view (lane depths, active jobs of every tenant, throughput, failure rate).
// Keys live in sessionStorage only: gone when the tab closes, never sent anywhere but this origin's API.

import { ApiError, jobs as jobsApi, operator as operatorApi } from "./api.js";
import { drawLineChart } from "./chart.js";

const TENANT_KEY = "imagepipe.tenantKey";
const OPERATOR_KEY = "imagepipe.operatorKey";
const FOLLOWED = "imagepipe.followedJobs"; // jobs submitted or followed from this tab: shown even when not listed
const LIST_SIZE = 20;
const FAST_POLL_MS = 1000; // while some job is unfinished
const SLOW_POLL_MS = 5000;
const OPERATOR_POLL_MS = 3000;
const RATE_WINDOW_MS = 5000; // images/s is measured over this much of the page's own samples
const CHART_POINTS = 120;
const GROUP_MEMBERS_SHOWN = 12;
const TERMINAL = new Set(["succeeded", "completed_with_errors", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);

// --- small DOM helpers ---------------------------------------------------------------------------------------

const present = (nodes) => nodes.filter((n) => n !== null && n !== undefined);

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...present(children));
  return node;
}

let messageTimer = null;

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
  clearTimeout(messageTimer);
  if (text && kind === "info") messageTimer = setTimeout(() => showMessage(""), 15000);
}

function errorText(error) {
  if (error instanceof ApiError) return `${error.message} (${error.code}${error.status ? `, HTTP ${error.status}` : ""})`;
  return String(error);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function number(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function progressBar(percent, label) {
  const value = Math.max(0, Math.min(100, percent || 0));
  const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" });
  bar.setAttribute("aria-valuenow", String(value));
  bar.setAttribute("aria-label", label);
  const fill = h("div", { class: "fill" });
  fill.style.width = `${value}%`;
  bar.append(fill, h("span", { class: "value" }, `${value.toFixed(value % 1 ? 1 : 0)} %`));
  return bar;
}

function setProgress(bar, percent) {
  const value = Math.max(0, Math.min(100, percent || 0));
  bar.setAttribute("aria-valuenow", String(value));
  bar.querySelector(".fill").style.width = `${value}%`;
  bar.querySelector(".value").textContent = `${value.toFixed(value % 1 ? 1 : 0)} %`;
}

// --- tabs ----------------------------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of ["jobs", "operator"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`view-${tab}`).hidden = tab !== name;
  }
  showMessage("");
  if (name === "operator") operatorView.start();
  else operatorView.stop();
}

// --- the tenant view -----------------------------------------------------------------------------------------

class JobCard {
  constructor(jobId, view) {
    this.jobId = jobId;
    this.view = view;
    this.samples = []; // {t, done}: the page's own samples, for images/s over time
    this.rates = [];
    this.groupsShown = false;
    this.build();
  }

  build() {
    this.state = h("span", { class: "state" });
    this.title = h("h3", {}, h("code", {}, this.jobId), " ", this.state);
    this.meta = h("p", { class: "meta" });
    this.bar = progressBar(0, `progress of job ${this.jobId}`);
    this.counts = h("p", { class: "figures" });
    this.chart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.chart.setAttribute("viewBox", "0 0 600 90");
    this.chart.setAttribute("class", "chart small");
    this.chart.setAttribute("role", "img");
    this.chart.setAttribute("aria-label", `images per second of job ${this.jobId}`);
    this.errors = h("ul", { class: "codes" });
    this.duplicates = h("div", { class: "duplicates" });
    this.deadLetters = h("div", { class: "dead-letters" });
    this.cancelButton = h("button", { type: "button", class: "danger", "data-action": "cancel" }, "Cancel");
    this.cancelButton.addEventListener("click", () => this.view.cancel(this.jobId));
    this.replayButton = h("button", { type: "button", "data-action": "replay" }, "Replay dead-lettered chunks");
    this.replayButton.addEventListener("click", () => this.view.replay(this.jobId));
    this.actions = h("div", { class: "actions" }, this.replayButton, this.cancelButton);
    this.root = h(
      "article",
      { class: "card job", "data-job-id": this.jobId },
      h("header", {}, this.title, this.actions),
      this.meta,
      this.bar,
      this.counts,
      this.chart,
      this.errors,
      this.duplicates,
      this.deadLetters,
    );
  }

  sample(status, now) {
    const c = status.counts;
    const done = c.succeeded + c.failed; // processed: skipped images (a cancel) are not throughput
    this.samples.push({ t: now, done });
    while (this.samples.length > 2 && now - this.samples[1].t >= RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0];
    const rate = now > first.t ? ((done - first.done) * 1000) / (now - first.t) : 0;
    if (!TERMINAL.has(status.state) || this.rates.length === 0 || this.lastState !== status.state) {
      this.rates.push(Math.max(0, Number(rate.toFixed(2))));
      if (this.rates.length > CHART_POINTS) this.rates.shift();
    }
    this.lastState = status.state;
    return rate;
  }

  update(status, now) {
    this.status = status;
    const rate = this.sample(status, now);
    const terminal = TERMINAL.has(status.state);
    this.root.dataset.state = status.state;
    this.state.textContent = status.cancel_requested && !terminal ? `${status.state} (cancelling)` : status.state;
    this.state.className = `state ${status.state}`;
    const total = status.total_images ?? "?";
    this.meta.textContent =
      `lane ${status.lane} · ${total} images in ${status.total_chunks ?? "?"} ` +
      `chunk${status.total_chunks === 1 ? "" : "s"} · created ` +
      new Date(status.created_at).toLocaleString();
    setProgress(this.bar, status.percent);
    const c = status.counts;
    this.counts.replaceChildren(
      h("span", {}, h("strong", {}, String(c.succeeded)), " succeeded"),
      h("span", {}, h("strong", {}, String(c.failed)), " failed"),
      h("span", {}, h("strong", {}, String(c.skipped)), " skipped"),
      h("span", {}, h("strong", { class: "rate" }, number(terminal ? 0 : rate)), " images/s now"),
      h("span", {}, h("strong", {}, number(status.images_per_second)), " images/s average"),
      h("span", {}, "ETA ", h("strong", { class: "eta" }, terminal ? "done" : duration(status.eta_seconds))),
    );
    drawLineChart(this.chart, this.rates, { label: "images/s" });
    this.renderErrors(status.errors || {});
    this.renderDuplicates(status);
    this.renderDeadLetters(status);
    this.cancelButton.hidden = terminal;
    this.cancelButton.disabled = Boolean(status.cancel_requested);
    const unreplayed = (status.dead_lettered_chunks || []).some((d) => !d.replayed);
    this.replayButton.hidden = !(status.dead_lettered_count > 0);
    this.replayButton.disabled = !unreplayed || Boolean(status.cancel_requested);
  }

  renderErrors(errors) {
    const entries = Object.entries(errors).sort((a, b) => b[1] - a[1]);
    this.errors.replaceChildren(
      ...entries.map(([code, n]) => h("li", { "data-code": code }, h("code", {}, code), ` × ${n}`)),
    );
    this.errors.hidden = entries.length === 0;
  }

  renderDuplicates(status) {
    const d = status.duplicates || { state: "none", groups: 0, images: 0 };
    const summary =
      d.state === "ready"
        ? `${d.groups} duplicate group${d.groups === 1 ? "" : "s"} (${d.images} images)`
        : d.state === "pending"
          ? "duplicate groups: being reconciled…"
          : "";
    const children = [h("span", { class: "summary" }, summary)];
    if (d.state === "ready" && d.groups > 0) {
      const toggle = h("button", { type: "button", class: "quiet", "data-action": "duplicates" },
        this.groupsShown ? "Hide groups" : "Show groups");
      toggle.addEventListener("click", () => this.toggleGroups());
      children.push(toggle);
    }
    if (this.groupsShown && this.groupList) children.push(this.groupList);
    this.duplicates.replaceChildren(...children);
    this.duplicates.hidden = !summary;
  }

  async toggleGroups() {
    this.groupsShown = !this.groupsShown;
    if (this.groupsShown) {
      try {
        const page = await jobsApi.duplicates(this.view.key, this.jobId, 20);
        this.groupList = h(
          "ol",
          { class: "groups" },
          ...page.items.map((g) => {
            // Members are image ids `{job}.{index}`: this job's shown by index, other jobs' (the library) in full.
            const shown = g.members.slice(0, GROUP_MEMBERS_SHOWN).map((m) =>
              h("code", { title: m }, m.startsWith(`${this.jobId}.`) ? `#${m.slice(this.jobId.length + 1)}` : m));
            const more = g.members.length - shown.length;
            return h("li", {}, `group ${g.group}${g.part ? ` (part ${g.part + 1})` : ""}, ${g.size} images: `,
              ...shown, more > 0 ? ` and ${more} more` : null);
          }),
        );
        if (page.continuation) this.groupList.append(h("li", { class: "hint" }, "… more groups through the API"));
      } catch (error) {
        showMessage(errorText(error));
        this.groupsShown = false;
      }
    }
    if (this.status) this.renderDuplicates(this.status);
  }

  renderDeadLetters(status) {
    const chunks = status.dead_lettered_chunks || [];
    if (!status.dead_lettered_count) {
      this.deadLetters.replaceChildren();
      this.deadLetters.hidden = true;
      return;
    }
    this.deadLetters.hidden = false;
    const rows = chunks.map((d) =>
      h(
        "tr",
        { "data-chunk": String(d.chunk), "data-replayed": String(Boolean(d.replayed)) },
        h("td", {}, String(d.chunk)),
        h("td", {}, h("code", {}, d.reason)),
        h("td", {}, d.description || ""),
        h("td", {}, new Date(d.dead_lettered_at).toLocaleTimeString()),
        h("td", { class: "replayed" }, d.replayed ? "replayed" : "not replayed"),
      ),
    );
    const more = status.dead_lettered_count - chunks.length;
    this.deadLetters.replaceChildren(
      ...present([
        h("h4", {}, `Dead-lettered chunks: ${status.dead_lettered_count}`),
        h("table", {},
          h("thead", {}, h("tr", {}, ...["chunk", "reason", "description", "when", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, ...rows)),
        more > 0 ? h("p", { class: "hint" }, `and ${more} more`) : null,
      ]),
    );
  }
}

class TenantView {
  constructor() {
    this.key = sessionStorage.getItem(TENANT_KEY) || "";
    this.cards = new Map();
    this.timer = null;
  }

  init() {
    $("tenant-key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.useKey($("tenant-key").value.trim());
    });
    $("tenant-key-forget").addEventListener("click", () => this.useKey(""));
    $("submit-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    $("track-button").addEventListener("click", () => {
      const id = $("track-id").value.trim();
      if (id) {
        this.follow(id);
        $("track-id").value = "";
        this.refreshSoon();
      }
    });
    this.useKey(this.key);
  }

  useKey(key) {
    if (key !== sessionStorage.getItem(TENANT_KEY)) sessionStorage.removeItem(FOLLOWED); // another tenant's jobs
    this.key = key;
    if (key) sessionStorage.setItem(TENANT_KEY, key);
    else sessionStorage.removeItem(TENANT_KEY);
    $("tenant-key").value = "";
    $("tenant-key").placeholder = key ? "key in use (type another to switch)" : "ipk_…";
    $("tenant-area").hidden = !key;
    for (const card of this.cards.values()) card.root.remove();
    this.cards.clear();
    showMessage("");
    this.refreshSoon();
  }

  followed() {
    try {
      return JSON.parse(sessionStorage.getItem(FOLLOWED) || "[]");
    } catch {
      return [];
    }
  }

  follow(jobId) {
    const ids = this.followed().filter((id) => id !== jobId);
    ids.unshift(jobId);
    sessionStorage.setItem(FOLLOWED, JSON.stringify(ids.slice(0, 50)));
  }

  async submit() {
    const urls = $("submit-urls").value.split("\n").map((u) => u.trim()).filter(Boolean);
    if (!urls.length) {
      showMessage("Give at least one image URL.");
      return;
    }
    $("submit-button").disabled = true;
    try {
      const accepted = await jobsApi.submit(this.key, urls);
      this.follow(accepted.job_id);
      $("submit-urls").value = "";
      showMessage(`Job ${accepted.job_id} accepted: ${accepted.total_images} images on lane ${accepted.lane}.`, "info");
      this.refreshSoon();
    } catch (error) {
      showMessage(errorText(error));
    } finally {
      $("submit-button").disabled = false;
    }
  }

  async cancel(jobId) {
    try {
      const status = await jobsApi.cancel(this.key, jobId);
      this.render([status]);
      showMessage(`Cancelling job ${jobId}: the remaining images are skipped.`, "info");
    } catch (error) {
      showMessage(errorText(error));
    }
  }

  async replay(jobId) {
    try {
      const answer = await jobsApi.replay(this.key, jobId);
      const chunks = answer.replayed_chunks;
      showMessage(
        `Job ${jobId}: re-sent ${chunks.length} dead-lettered chunk${chunks.length === 1 ? "" : "s"}` +
          (answer.remaining ? `, ${answer.remaining} left (replay again)` : "") + ".",
        "info",
      );
      this.refreshSoon();
    } catch (error) {
      showMessage(errorText(error));
    }
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 0);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.key) return;
    let statuses = [];
    let busy = false;
    try {
      statuses = await this.load();
      this.render(statuses);
      busy = statuses.some((s) => !TERMINAL.has(s.state) || (s.duplicates && s.duplicates.state === "pending"));
    } catch (error) {
      showMessage(errorText(error));
    }
    document.body.dataset.tenantRefreshed = String(Date.now());
    this.timer = setTimeout(() => this.refresh(), busy ? FAST_POLL_MS : SLOW_POLL_MS);
  }

  async load() {
    const byId = new Map();
    const page = await jobsApi.list(this.key, LIST_SIZE);
    for (const status of page.items) byId.set(status.job_id, status);
    $("jobs-source").textContent = `newest ${LIST_SIZE}, and jobs followed from this tab`;
    const missing = this.followed().filter((id) => !byId.has(id));
    const fetched = await Promise.all(
      missing.map((id) =>
        jobsApi.get(this.key, id).catch((error) => {
          if (error instanceof ApiError && error.status === 404) {
            showMessage(`No job ${id} for this key.`);
            sessionStorage.setItem(FOLLOWED, JSON.stringify(this.followed().filter((f) => f !== id)));
            return null;
          }
          throw error;
        }),
      ),
    );
    for (const status of fetched) if (status) byId.set(status.job_id, status);
    return [...byId.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  }

  render(statuses) {
    const now = Date.now();
    const container = $("jobs");
    for (const status of statuses) {
      let card = this.cards.get(status.job_id);
      if (!card) {
        card = new JobCard(status.job_id, this);
        this.cards.set(status.job_id, card);
      }
      card.update(status, now);
    }
    const ordered = [...this.cards.values()].sort((a, b) => (a.status.created_at < b.status.created_at ? 1 : -1));
    ordered.forEach((card, i) => {
      if (container.children[i] !== card.root) container.insertBefore(card.root, container.children[i] || null);
    });
    $("jobs-empty").hidden = this.cards.size > 0;
  }
}

// --- the operator view ---------------------------------------------------------------------------------------

class OperatorView {
  constructor() {
    this.key = sessionStorage.getItem(OPERATOR_KEY) || "";
    this.timer = null;
    this.running = false;
  }

  init() {
    $("operator-key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.useKey($("operator-key").value.trim());
    });
    $("operator-key-forget").addEventListener("click", () => this.useKey(""));
  }

  useKey(key) {
    this.key = key;
    if (key) sessionStorage.setItem(OPERATOR_KEY, key);
    else sessionStorage.removeItem(OPERATOR_KEY);
    $("operator-key").value = "";
    $("operator-key").placeholder = key ? "key in use (type another to switch)" : "";
    $("operator-area").hidden = true;
    showMessage("");
    if (this.running) this.refresh();
  }

  start() {
    this.running = true;
    this.refresh();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.running || !this.key) return;
    try {
      this.render(await operatorApi.overview(this.key));
      $("operator-area").hidden = false;
    } catch (error) {
      $("operator-area").hidden = true;
      showMessage(
        error instanceof ApiError && error.code === "operator_view_disabled"
          ? "The operator view is disabled on this deployment (set ADMIN_API_KEY_SHA256)."
          : errorText(error),
      );
      if (error instanceof ApiError && error.status === 401) return; // a wrong key stays wrong
    }
    document.body.dataset.operatorRefreshed = String(Date.now());
    this.timer = setTimeout(() => this.refresh(), OPERATOR_POLL_MS);
  }

  render(overview) {
    const t = overview.throughput;
    $("op-rate").textContent = number(t.images_per_second, 2);
    $("op-failure").textContent = t.failure_rate === null ? "–" : `${(100 * t.failure_rate).toFixed(1)} %`;
    $("op-images").textContent = String(t.images);
    $("op-window").textContent =
      `last ${t.window_seconds / 60} minutes, ${t.bucket_seconds} s a point; ${t.succeeded} succeeded, ${t.failed} failed`;
    drawLineChart($("op-chart"), t.series.map((p) => p.images_per_second), { label: "images/s" });
    $("op-errors").replaceChildren(
      ...Object.entries(t.errors).slice(0, 8).map(([code, n]) => h("li", {}, h("code", {}, code), ` × ${n}`)),
    );

    const deepest = Math.max(1, ...overview.lanes.map((l) => l.active));
    $("op-lanes").tBodies[0].replaceChildren(
      ...overview.lanes.map((lane) => {
        const bar = h("div", { class: "depth" });
        bar.style.width = `${(100 * lane.active) / deepest}%`;
        const detail = Object.entries(lane.queues).map(([q, d]) => `${q}: ${d.active} waiting, ${d.scheduled} scheduled`);
        return h(
          "tr",
          { "data-lane": lane.lane, title: detail.join("\n") },
          h("th", {}, lane.lane),
          h("td", { class: "active" }, String(lane.active)),
          h("td", { class: "bar-cell" }, bar),
          h("td", { class: "dead-letter" }, String(lane.dead_letter)),
        );
      }),
    );
    $("op-timer").textContent =
      (overview.lane_depths_available ? "" : "Queue depths unavailable (Service Bus administration did not answer). ") +
      (overview.status_timer_last_tick
        ? `Status timer last ran ${new Date(overview.status_timer_last_tick).toLocaleTimeString()}.`
        : "The status timer has not run yet.");

    $("op-active-count").textContent =
      `${overview.active_jobs.length}${overview.active_jobs_truncated ? "+ (newest shown)" : ""}`;
    $("op-jobs").tBodies[0].replaceChildren(
      ...overview.active_jobs.map((job) =>
        h(
          "tr",
          { "data-job-id": job.job_id },
          h("td", {}, h("code", {}, job.job_id)),
          h("td", {}, h("code", {}, job.tenant_id)),
          h("td", {}, job.lane),
          h("td", {}, job.cancel_requested ? `${job.state} (cancelling)` : job.state),
          h("td", {}, progressBar(job.percent ?? 0, `progress of job ${job.job_id}`)),
          h("td", {}, number(job.images_per_second)),
          h("td", {}, duration(job.eta_seconds)),
        ),
      ),
    );
  }
}

const tenantView = new TenantView();
const operatorView = new OperatorView();
tenantView.init();
operatorView.init();
$("tab-jobs").addEventListener("click", () => selectTab("jobs"));
$("tab-operator").addEventListener("click", () => selectTab("operator"));
selectTab(window.location.hash === "#operator" ? "operator" : "jobs");
window.addEventListener("hashchange", () => selectTab(window.location.hash === "#operator" ? "operator" : "jobs"));
