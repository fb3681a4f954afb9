// Jobs: the caller's jobs with live progress (SSE), a submit form, cancel, result view.
import * as api from "../api.js";
import { TERMINAL, followJob } from "../jobwatch.js";
import {
  ago,
  button,
  card,
  chip,
  clear,
  confirmDialog,
  dataTable,
  downloadJson,
  errorState,
  h,
  labelRow,
  loading,
  modal,
  notice,
  pageHead,
  prettyJson,
  progressBar,
  showFieldErrors,
  state,
  toast,
  when,
} from "../ui.js";

const TONE = { PENDING: "", PROCESSING: "info", COMPLETED: "ok", FAILED: "bad", CANCELLED: "warn" };
const BAR_TONE = { COMPLETED: "done", FAILED: "failed", CANCELLED: "cancelled" };
// A browser opens about six HTTP/1.1 connections per host: keep most for API calls.
const MAX_STREAMS = 3;
const POLL_MS = 5000;
const JOB_COLUMNS = ["Job", "Status", "Progress", ["Created", "hide-phone"], ""];
const PAGE_SIZE = 25;
// When a terminal job ended, whichever way (each state names its own time).
const finishedAt = (job) => job.completedAt || job.failedAt || job.cancelledAt;
// The built-in processors (docs/jobs.md), offered when the server does not list its types
// (GET /api/jobs/types, `{types: [...]}`); a plug-in type can always be typed in.
const BUILT_IN_TYPES = ["type1", "type2", "type3"];
const TYPES_PATH = "/api/jobs/types";
const OTHER_TYPE = "";
const EXAMPLE_DATA = [
  { id: 1, value: "alpha" },
  { id: 2, value: "beta" },
  { id: 3, value: "gamma" },
];

export default {
  render(main) {
    const view = new JobsView(main);
    view.start();
    return () => view.stop();
  },
};

function jobFacts(job) {
  return [
    h(
      "dl",
      { class: "facts" },
      fact("Status", chip(job.status.toLowerCase(), TONE[job.status], !TERMINAL.has(job.status))),
      fact("Type", job.processingType),
      fact("Progress", `${job.progress}%`),
      fact("Attempts", `${job.attempts} of ${job.maxAttempts}`),
      fact("Created", when(job.createdAt)),
      job.startedAt ? fact("Started", when(job.startedAt)) : null,
      finishedAt(job) ? fact("Finished", when(finishedAt(job))) : null,
      job.nextAttemptAt ? fact("Next attempt", when(job.nextAttemptAt)) : null,
    ),
    job.error ? notice("error", "The job failed:", job.error) : null,
    job.lastError && !job.error ? notice("warn", "The last attempt failed:", job.lastError) : null,
    job.result !== undefined
      ? [h("h3", { text: "Result" }), h("pre", { class: "json", tabindex: "0", text: prettyJson(job.result) })]
      : TERMINAL.has(job.status)
        ? null
        : h("p", { class: "muted", text: "The result appears here when the job completes." }),
  ];
}

class JobsView {
  constructor(main) {
    this.main = main;
    this.rows = new Map(); // jobId -> {job, tr, chipCell, bar, actions}
    this.streams = new Map(); // jobId -> stop following
    this.pollTimer = null;
    this.stopped = false;
    this.cursor = null;
    this.statusFilter = "";
  }

  start() {
    this.tbody = h("tbody");
    this.listBody = h("div");
    this.moreButton = button("Load more", () => this.load(true), { kind: "small", hidden: true });
    const filter = h(
      "select",
      { "aria-label": "Filter by status", class: "filter" },
      ["", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"].map((s) =>
        h("option", { value: s, text: s ? s.toLowerCase() : "all statuses" }),
      ),
    );
    filter.addEventListener("change", () => {
      this.statusFilter = filter.value;
      this.load(false);
    });
    this.form = this.submitForm();
    clear(
      this.main,
      pageHead(
        "Jobs",
        "Submit data-processing jobs and follow them live.",
        button("Refresh", () => this.load(false), { kind: "small" }),
      ),
      h(
        "div",
        { class: "grid-2" },
        card(
          "Your jobs",
          { subtitle: "Newest first; progress updates live.", actions: [filter], flush: true },
          this.listBody,
          h("div", { class: "card-body", hidden: true }, this.moreButton),
        ),
        card("Submit a job", { subtitle: "Runs on the server's job workers." }, this.form),
      ),
    );
    this.load(false);
  }

  stop() {
    this.stopped = true;
    for (const stopFollowing of this.streams.values()) stopFollowing();
    this.streams.clear();
    clearTimeout(this.pollTimer);
  }

  // ---- list -------------------------------------------------------------------------------

  async load(more) {
    if (!more) {
      clear(this.listBody, loading("Loading jobs…"));
      this.cursor = null;
    }
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.statusFilter) params.set("status", this.statusFilter);
    if (more && this.cursor) params.set("cursor", this.cursor);
    let page;
    try {
      page = await api.api(`/api/jobs?${params}`);
    } catch (error) {
      if (!more)
        clear(
          this.listBody,
          errorState(error, () => this.load(false)),
        );
      else toast(error.message, "error");
      return;
    }
    if (this.stopped) return;
    if (!more) {
      for (const stopFollowing of this.streams.values()) stopFollowing();
      this.streams.clear();
      this.rows.clear();
      clear(this.tbody);
    }
    for (const job of page.jobs) this.addRow(job, false);
    this.cursor = page.nextCursor;
    this.moreButton.hidden = !this.cursor;
    this.moreButton.parentElement.hidden = !this.cursor;
    this.renderList();
    this.followActive();
  }

  renderList() {
    if (this.rows.size === 0) {
      clear(
        this.listBody,
        state(
          "empty",
          this.statusFilter ? `No ${this.statusFilter.toLowerCase()} jobs` : "No jobs yet",
          this.statusFilter
            ? "Choose another status filter, or submit a job."
            : "Submit one with the form: pick a processing type, give it a JSON array of items, and watch it run.",
        ),
      );
      return;
    }
    clear(
      this.listBody,
      dataTable(JOB_COLUMNS, [...this.tbody.children], { tbody: this.tbody, className: "jobs-table" }),
    );
  }

  addRow(job, prepend) {
    const chipCell = h("td");
    const bar = progressBar(job.progress);
    const actions = h("td", { class: "actions-cell" });
    const tr = h(
      "tr",
      { "data-job-id": job.jobId },
      h(
        "td",
        {},
        h("span", { class: "mono", text: job.jobId }),
        h("span", { class: "sub", text: job.processingType }),
      ),
      chipCell,
      h("td", {}, bar.root),
      h("td", { class: "hide-phone nowrap", title: when(job.createdAt), text: ago(job.createdAt) }),
      actions,
    );
    const row = { job, tr, chipCell, bar, actions };
    this.rows.set(job.jobId, row);
    if (prepend) this.tbody.prepend(tr);
    else this.tbody.append(tr);
    const table = this.tbody.closest("table");
    if (table) labelRow(table, tr);
    this.paint(row);
  }

  paint(row) {
    const { job } = row;
    const label = job.status === "PROCESSING" && job.nextAttemptAt ? "RETRYING" : job.status;
    clear(row.chipCell, chip(label.toLowerCase(), TONE[job.status], !TERMINAL.has(job.status)));
    if (job.lastError && !TERMINAL.has(job.status))
      row.chipCell.append(h("span", { class: "sub", text: `last attempt: ${job.lastError}` }));
    row.bar.set(job.progress, BAR_TONE[job.status] || "");
    row.tr.dataset.status = job.status;
    clear(
      row.actions,
      button("View", () => this.showDetails(job.jobId), {
        kind: "small",
        "aria-label": `View job ${job.jobId}`,
      }),
      TERMINAL.has(job.status)
        ? null
        : button("Cancel", () => this.cancel(job.jobId), {
            kind: "small danger",
            "aria-label": `Cancel job ${job.jobId}`,
          }),
    );
  }

  update(job) {
    const row = this.rows.get(job.jobId);
    if (!row) return;
    row.job = { ...row.job, ...job };
    this.paint(row);
  }

  // ---- live progress ------------------------------------------------------------------------

  followActive() {
    for (const row of this.rows.values()) {
      if (this.streams.size >= MAX_STREAMS) break;
      if (!TERMINAL.has(row.job.status) && !this.streams.has(row.job.jobId)) this.follow(row.job.jobId);
    }
    this.schedulePoll();
  }

  follow(jobId) {
    const stop = followJob(
      jobId,
      (job) => this.update(job),
      () => {
        this.streams.delete(jobId);
        if (!this.stopped) this.followActive();
      },
    );
    this.streams.set(jobId, stop);
  }

  /** Active jobs beyond the stream budget are refreshed from the list every few seconds. */
  schedulePoll() {
    clearTimeout(this.pollTimer);
    const unfollowed = [...this.rows.values()].some(
      (row) => !TERMINAL.has(row.job.status) && !this.streams.has(row.job.jobId),
    );
    if (!unfollowed || this.stopped) return;
    this.pollTimer = setTimeout(async () => {
      try {
        const page = await api.api(`/api/jobs?limit=${Math.max(PAGE_SIZE, this.rows.size)}`);
        for (const job of page.jobs) this.update(job);
      } catch {
        // The next round tries again; the rows keep their last state.
      }
      if (!this.stopped) this.followActive();
    }, POLL_MS);
  }

  // ---- actions --------------------------------------------------------------------------

  async cancel(jobId) {
    const ok = await confirmDialog(
      "Cancel this job?",
      `Job ${jobId} stops and is marked cancelled. Work already done is not undone.`,
      { confirm: "Cancel job", danger: true },
    );
    if (!ok) return;
    try {
      this.update(await api.api(`/api/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" }));
      toast("Job cancelled.", "ok");
    } catch (error) {
      toast(error.status === 409 ? "The job had already finished." : error.message, "error");
    }
  }

  /** The job's facts and result; a running job's dialog follows it live until it ends. */
  async showDetails(jobId) {
    const body = h("div", {}, loading("Loading job…"));
    const download = button("Download JSON", null, { kind: "", disabled: true });
    let latest = null;
    download.addEventListener("click", () =>
      downloadJson(latest.status === "COMPLETED" ? latest.result : latest, `${jobId}.json`),
    );
    let stopFollowing = () => {};
    modal(`Job ${jobId}`, body, [download], { onclose: () => stopFollowing() });
    const show = (job) => {
      latest = { ...latest, ...job };
      this.update(latest);
      download.disabled = (latest.status === "FAILED" ? latest.error : latest.result) === undefined;
      clear(body, jobFacts(latest));
    };
    try {
      show(await api.api(`/api/jobs/${encodeURIComponent(jobId)}`));
    } catch (error) {
      clear(body, errorState(error));
      return;
    }
    if (!TERMINAL.has(latest.status)) stopFollowing = followJob(jobId, show);
  }

  // ---- submit ---------------------------------------------------------------------------

  submitForm() {
    this.typeSelect = h("select", { name: "processingType", required: true });
    const customType = h("input", { type: "text", name: "customType", placeholder: "my-plugin-type" });
    const customField = h(
      "label",
      { class: "field", hidden: true },
      h("span", { text: "Plug-in processing type" }),
      customType,
      h("span", { class: "hint", text: "The name a processor plug-in registered (see docs/jobs.md)." }),
    );
    this.typeSelect.addEventListener("change", () => {
      customField.hidden = this.typeSelect.value !== OTHER_TYPE;
    });
    const dataText = h("textarea", {
      name: "data",
      rows: "7",
      spellcheck: "false",
      value: prettyJson(EXAMPLE_DATA),
      "aria-describedby": "data-hint",
    });
    const dataFile = h("input", { type: "file", name: "dataFile", accept: ".json,application/json" });
    const fileField = h(
      "label",
      { class: "field", hidden: true },
      h("span", { text: "Data file (JSON array)" }),
      dataFile,
    );
    const textField = h(
      "label",
      { class: "field" },
      h("span", { text: "Data (JSON array of objects)" }),
      dataText,
      h("span", { class: "hint", id: "data-hint", text: "1 to 1000 objects." }),
    );
    const jsonMode = h("button", { type: "button", "aria-pressed": "true", text: "Type JSON" });
    const fileMode = h("button", { type: "button", "aria-pressed": "false", text: "Upload file" });
    const setMode = (file) => {
      jsonMode.setAttribute("aria-pressed", String(!file));
      fileMode.setAttribute("aria-pressed", String(file));
      fileField.hidden = !file;
      textField.hidden = file;
    };
    jsonMode.addEventListener("click", () => setMode(false));
    fileMode.addEventListener("click", () => setMode(true));
    const options = h("textarea", {
      name: "options",
      rows: "3",
      spellcheck: "false",
      value: prettyJson({ delayMs: 300 }),
    });
    const feedback = h("div");
    const submit = button("Submit job", null, { kind: "primary", type: "submit" });
    const form = h(
      "form",
      { class: "form", novalidate: true },
      feedback,
      h("label", { class: "field" }, h("span", { text: "Processing type" }), this.typeSelect),
      customField,
      h(
        "div",
        { class: "segmented", role: "group", "aria-label": "How to give the data" },
        jsonMode,
        fileMode,
      ),
      textField,
      fileField,
      h(
        "label",
        { class: "field" },
        h("span", { text: "Options (JSON object)" }),
        options,
        h("span", {
          class: "hint",
          text: "attempts, timeout (s), retryDelayMs; built-ins also take delayMs and batchSize (type3).",
        }),
      ),
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(feedback);
      showFieldErrors(form, {});
      let body;
      try {
        const fromFile = !fileField.hidden;
        const raw = fromFile ? await readFile(dataFile) : dataText.value;
        let data = parseJson(raw, fromFile ? "dataFile" : "data");
        if (data && !Array.isArray(data) && Array.isArray(data.data)) data = data.data; // a saved submission
        body = {
          processingType: this.typeSelect.value || customType.value.trim(),
          data,
          options: options.value.trim() ? parseJson(options.value, "options") : {},
        };
      } catch (error) {
        showFieldErrors(form, { [error.field]: error.message });
        return;
      }
      submit.disabled = true;
      try {
        const accepted = await api.api("/api/jobs", { method: "POST", json: body });
        const now = new Date().toISOString();
        this.addRow(
          {
            jobId: accepted.jobId,
            status: accepted.status,
            progress: 0,
            processingType: body.processingType,
            createdAt: now,
            updatedAt: now,
          },
          true,
        );
        this.renderList();
        this.follow(accepted.jobId);
        toast(`Job ${accepted.jobId} submitted.`, "ok");
      } catch (error) {
        const unplaced = showFieldErrors(form, error.fields);
        clear(
          feedback,
          notice("error", unplaced.length ? `${error.message}` : "Fix the marked fields and submit again."),
        );
      } finally {
        submit.disabled = false;
      }
    });
    this.loadTypes();
    return form;
  }

  async loadTypes() {
    let types = BUILT_IN_TYPES;
    if (api.offers("GET", TYPES_PATH)) {
      try {
        types = (await api.api(TYPES_PATH)).types;
      } catch {
        // The built-in names still work; the form stays usable.
      }
    }
    clear(
      this.typeSelect,
      types.map((t) => h("option", { value: t, text: t })),
      h("option", { value: OTHER_TYPE, text: "Other (a plug-in type)…" }),
    );
  }
}

function fact(label, value) {
  return [h("dt", { text: label }), h("dd", {}, value)];
}

function parseJson(text, field) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw Object.assign(new Error(`Not valid JSON: ${error.message}`), { field });
  }
}

async function readFile(input) {
  const file = input.files && input.files[0];
  if (!file)
    throw Object.assign(new Error("Choose a .json file with the data array."), { field: "dataFile" });
  return file.text();
}
