// Small DOM helpers shared by the pages. Elements are built with createElement (never
// innerHTML with data), so API text can never become markup; no inline styles or scripts.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "value" || key === "checked") el[key] = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- page furniture ----------------------------------------------------------------------

export function pageHead(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", { text: title }), subtitle ? h("p", { text: subtitle }) : null),
    h("div", { class: "actions" }, actions),
  );
}

export function card(title, { subtitle, actions = [], flush = false, id } = {}, ...body) {
  return h(
    "section",
    { class: "card", id, "aria-label": title },
    h(
      "div",
      { class: "card-head" },
      h("div", {}, h("h2", { text: title }), subtitle ? h("p", { text: subtitle }) : null),
      actions.length ? h("div", { class: "actions" }, actions) : null,
    ),
    h("div", { class: flush ? "card-body flush" : "card-body" }, body),
  );
}

export function button(label, onclick, { kind = "", small = false, type = "button", ...rest } = {}) {
  const cls = ["btn", kind, small ? "small" : ""].filter(Boolean).join(" ");
  return h("button", { type, class: cls, onclick, ...rest }, label);
}

/** Empty, loading and error states: say what is going on and what to do. */
export function state(kind, title, text, ...actions) {
  const icon = { empty: "∅", error: "!", loading: "", unavailable: "–" }[kind] ?? "i";
  return h(
    "div",
    { class: `state ${kind}`, role: kind === "error" ? "alert" : null },
    kind === "loading"
      ? h("div", { class: "spinner", "aria-hidden": "true" })
      : h("div", { class: "state-icon", "aria-hidden": "true", text: icon }),
    h("h3", { text: title }),
    text ? h("p", {}, text) : null,
    actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}

export const loading = (what = "Loading…") => state("loading", what, "");

export function errorState(error, retry) {
  const title =
    error.status === 403
      ? "You do not have access to this"
      : error.status === 0
        ? "The server cannot be reached"
        : error.status === 503
          ? "This service is unavailable right now"
          : "Something went wrong";
  return state("error", title, error.message, retry ? button("Try again", retry, { kind: "primary" }) : null);
}

/**
 * Fill `body` from one API list read: a loading line, then the items; a failed read shows
 * the API's error with a retry, an empty list the `empty` state ([title, text, action?]).
 * Returns the items to draw, or null when `body` already says what happened. `quiet`
 * (a periodic refresh) keeps what is shown while reading and after a failure.
 */
export async function loadList(body, { loadingText, read, retry, empty, quiet = false }) {
  if (!quiet) clear(body, loading(loadingText));
  let items;
  try {
    items = await read();
  } catch (error) {
    if (!quiet) clear(body, errorState(error, retry));
    return null;
  }
  if (!items.length) {
    clear(body, state("empty", ...empty));
    return null;
  }
  return items;
}

export function unavailable(feature, path) {
  const body = state(
    "unavailable",
    `${feature} is not available on this server`,
    h(
      "span",
      {},
      "This vpsapi build does not offer ",
      h("code", { text: path }),
      ". Update the server to a version with this module, then reload.",
    ),
  );
  return h("section", { class: "card" }, h("div", { class: "card-body" }, body));
}

export function notice(kind, text, detail) {
  return h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    text,
    detail ? h("pre", { text: detail }) : null,
  );
}

// ---- tables ------------------------------------------------------------------------------

/**
 * A table that becomes stacked cards on a phone, each cell labelled by its column.
 * `columns`: header texts, or [text, className] (e.g. "hide-phone"). Rows added to
 * `tbody` later are labelled with `labelRow`.
 */
export function dataTable(columns, rows, { tbody = h("tbody"), className = "" } = {}) {
  const specs = columns.map((c) => (Array.isArray(c) ? c : [c, null]));
  const table = h(
    "table",
    { class: className || null },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        specs.map(([text, cls]) => h("th", { class: cls, text })),
      ),
    ),
    tbody,
  );
  table.labels = specs.map(([text]) => text);
  tbody.append(...rows);
  for (const row of rows) labelRow(table, row);
  return h("div", { class: "table-wrap" }, table);
}

export function labelRow(table, row) {
  [...row.children].forEach((cell, i) => cell.setAttribute("data-label", table.labels[i] || ""));
}

// ---- status chips and progress -----------------------------------------------------------

export function chip(text, tone = "", live = false) {
  return h("span", { class: `chip ${tone}${live ? " live" : ""}`, text });
}

export function progressBar(value = 0) {
  const bar = h("div", { class: "progress-bar" });
  const label = h("span", { class: "progress-label" });
  const track = h(
    "div",
    {
      class: "progress-track",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
    },
    bar,
  );
  const root = h("div", { class: "progress" }, track, label);
  const set = (percent, tone = "") => {
    const clamped = Math.max(0, Math.min(100, Math.round(percent || 0)));
    bar.style.width = `${clamped}%`; // CSSOM, allowed by the CSP (no style attribute)
    bar.className = `progress-bar ${tone}`;
    label.textContent = `${clamped}%`;
    track.setAttribute("aria-valuenow", String(clamped));
  };
  set(value);
  return { root, set };
}

// ---- toasts and dialogs ------------------------------------------------------------------

export function toast(text, kind = "") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind}`, text });
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 7000 : 4000);
}

/** A modal <dialog> (focus trapped by the browser, Esc closes). Returns {dialog, close}. */
export function modal(title, body, footer = [], { narrow = false, onclose } = {}) {
  const closeBtn = h("button", { type: "button", class: "btn ghost small", "aria-label": "Close" }, "✕");
  const dialog = h(
    "dialog",
    { class: narrow ? "narrow" : "", "aria-label": title },
    h("div", { class: "dialog-head" }, h("h2", { text: title }), closeBtn),
    h("div", { class: "dialog-body" }, body),
    footer.length ? h("div", { class: "dialog-foot" }, footer) : null,
  );
  const close = () => dialog.close();
  closeBtn.addEventListener("click", close);
  dialog.addEventListener("close", () => {
    dialog.remove();
    onclose?.();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

export function confirmDialog(title, text, { confirm = "Confirm", danger = false } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const ok = button(
      confirm,
      () => {
        answer = true;
        view.close();
      },
      { kind: danger ? "danger solid" : "primary" },
    );
    const cancel = button("Cancel", () => view.close());
    const view = modal(title, h("p", {}, text), [cancel, ok], {
      narrow: true,
      onclose: () => resolve(answer),
    });
    cancel.focus();
  });
}

// ---- formatting ------------------------------------------------------------------------------

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function ago(value) {
  if (!value) return "—";
  const seconds = Math.round((Date.now() - new Date(value).getTime()) / 1000);
  if (Number.isNaN(seconds)) return String(value);
  const abs = Math.abs(seconds);
  if (abs < 5) return "just now";
  const [n, unit] =
    abs < 60
      ? [abs, "s"]
      : abs < 3600
        ? [abs / 60, "min"]
        : abs < 86400
          ? [abs / 3600, "h"]
          : [abs / 86400, "d"];
  const text = `${Math.floor(n)} ${unit}`;
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m` : `${s}s`;
}

export function bytes(value) {
  if (value == null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = Number(value);
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function num(value, digits = 1, suffix = "") {
  if (value == null || Number.isNaN(Number(value))) return "—";
  const text = Number(value).toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return `${text}${suffix}`;
}

export function prettyJson(value) {
  return JSON.stringify(value, null, 2);
}

export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function downloadJson(value, filename) {
  downloadBlob(new Blob([prettyJson(value)], { type: "application/json" }), filename);
}

/** Show a form's field errors next to the inputs named like the API's fields. */
export function showFieldErrors(form, fields) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const unplaced = [];
  for (const [field, message] of Object.entries(fields || {})) {
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (!input) {
      unplaced.push(`${field}: ${message}`);
      continue;
    }
    input.setAttribute("aria-invalid", "true");
    input.closest(".field")?.append(h("span", { class: "field-error", text: message }));
  }
  return unplaced;
}
