// Sites: nginx sites (validated by the server's real `nginx -t` before saving) and pools.
import * as api from "../api.js";
import {
  button,
  card,
  chip,
  clear,
  confirmDialog,
  dataTable,
  h,
  loadList,
  modal,
  notice,
  pageHead,
  showFieldErrors,
  toast,
  unavailable,
  when,
} from "../ui.js";

export default {
  render(main) {
    const sitesBody = h("div");
    const poolsBody = h("div");
    const loadSites = () => listSites(sitesBody, loadSites);
    clear(
      main,
      pageHead(
        "Sites",
        "nginx sites served by this machine. Every change is checked with nginx -t first.",
        button("New site", () => editSite(null, loadSites), { kind: "primary" }),
      ),
      card("Sites", { flush: true }, sitesBody),
      card(
        "Load-balancer pools",
        { subtitle: "Upstream groups a site can use as its backend.", flush: true },
        poolsBody,
      ),
    );
    loadSites();
    listPools(poolsBody);
    return null;
  },
};

async function listSites(body, reload) {
  const sites = await loadList(body, {
    loadingText: "Loading sites…",
    read: () => api.api("/api/configs"),
    retry: reload,
    empty: [
      "No sites yet",
      "Create a site to put an app behind nginx: a name, a port and where requests go.",
      button("New site", () => editSite(null, reload), { kind: "primary" }),
    ],
  });
  if (!sites) return;
  const rows = sites.map((site) =>
    h(
      "tr",
      { "data-site-id": site.id },
      h(
        "td",
        {},
        h("strong", { text: site.id }),
        h("span", { class: "sub", text: site.server_name || "any host name" }),
      ),
      h("td", { class: "num", text: String(site.listen_port) }),
      h(
        "td",
        { class: "hide-phone" },
        site.locations.map((loc) =>
          h("span", { class: "sub" }, h("code", { text: loc.path }), " → ", loc.backend || loc.root),
        ),
      ),
      h("td", {}, chip(site.is_active ? "enabled" : "disabled", site.is_active ? "ok" : "")),
      h("td", { class: "hide-phone nowrap", text: when(site.updated_at) }),
      h(
        "td",
        { class: "actions-cell" },
        button("Edit", () => editSite(site, reload), { kind: "small", "aria-label": `Edit ${site.id}` }),
        button(site.is_active ? "Disable" : "Enable", () => toggle(site, reload), {
          kind: "small",
          "aria-label": `${site.is_active ? "Disable" : "Enable"} ${site.id}`,
        }),
        button("Delete", () => remove(site, reload), {
          kind: "small danger",
          "aria-label": `Delete ${site.id}`,
        }),
      ),
    ),
  );
  clear(
    body,
    dataTable(["Site", "Port", ["Routes", "hide-phone"], "Status", ["Updated", "hide-phone"], ""], rows),
  );
}

async function toggle(site, reload) {
  try {
    const updated = await api.api(`/api/configs/${encodeURIComponent(site.id)}/toggle`, { method: "POST" });
    toast(`${site.id} ${updated.is_active ? "enabled" : "disabled"}; nginx reloaded.`, "ok");
    reload();
  } catch (error) {
    toast(error.message, "error");
  }
}

async function remove(site, reload) {
  const ok = await confirmDialog(
    `Delete ${site.id}?`,
    "Its nginx file is removed and nginx reloads; requests for it stop being served.",
    { confirm: "Delete site", danger: true },
  );
  if (!ok) return;
  try {
    await api.api(`/api/configs/${encodeURIComponent(site.id)}`, { method: "DELETE" });
    toast(`${site.id} deleted.`, "ok");
    reload();
  } catch (error) {
    toast(error.message, "error");
  }
}

// ---- the site form ---------------------------------------------------------------------

function locationRow(loc = { path: "/", backend: "" }) {
  const path = h("input", { type: "text", name: "path", value: loc.path, "aria-label": "Location path" });
  const target = h("input", {
    type: "text",
    name: "target",
    value: loc.backend || loc.root || "",
    placeholder: "http://127.0.0.1:3000, a pool name, or /srv/www (files)",
    "aria-label": "Backend URL, pool or directory",
  });
  const websocket = h("input", { type: "checkbox", name: "websocket", checked: !!loc.websocket });
  const sse = h("input", { type: "checkbox", name: "sse", checked: !!loc.sse });
  const row = h(
    "div",
    { class: "location-row" },
    h("label", { class: "field" }, path),
    h("label", { class: "field" }, target),
    button("Remove", () => row.remove(), { kind: "small ghost", "aria-label": "Remove this location" }),
    h(
      "div",
      { class: "checks" },
      h("label", { class: "check" }, websocket, "WebSocket"),
      h("label", { class: "check" }, sse, "Server-sent events"),
    ),
  );
  row.read = () => {
    const value = target.value.trim();
    const out = { path: path.value.trim(), websocket: websocket.checked, sse: sse.checked };
    // A leading slash means a directory to serve; anything else is a backend.
    if (value.startsWith("/")) out.root = value;
    else out.backend = value;
    // Keep the settings this form does not show (headers, timeouts...) when editing.
    const { backend: _backend, root: _root, ...kept } = loc;
    return { ...kept, ...out };
  };
  return row;
}

function editSite(site, reload) {
  const editing = !!site;
  const field = (label, input, hint) =>
    h(
      "label",
      { class: "field" },
      h("span", { text: label }),
      input,
      hint ? h("span", { class: "hint", text: hint }) : null,
    );
  const inputs = {
    id: h("input", {
      type: "text",
      name: "id",
      value: site?.id || "",
      disabled: editing,
      required: true,
      placeholder: "my-app",
    }),
    server_name: h("input", {
      type: "text",
      name: "server_name",
      value: site?.server_name || "",
      placeholder: "app.example.com www.example.com",
    }),
    listen_port: h("input", {
      type: "number",
      name: "listen_port",
      min: "1",
      max: "65535",
      value: String(site?.listen_port ?? 80),
    }),
    ssl_cert: h("input", {
      type: "text",
      name: "ssl_cert",
      value: site?.ssl_cert || "",
      placeholder: "/etc/ssl/certs/app.pem",
    }),
    ssl_key: h("input", {
      type: "text",
      name: "ssl_key",
      value: site?.ssl_key || "",
      placeholder: "/etc/ssl/private/app.key",
    }),
    rate_limit_global: h("input", {
      type: "text",
      name: "rate_limit_global",
      value: site?.rate_limit_global || "",
      placeholder: "10r/s",
    }),
  };
  const flags = {
    is_active: ["Enabled", site?.is_active ?? true],
    ssl_redirect: ["Redirect HTTP to HTTPS", site?.ssl_redirect ?? false],
    gzip_enabled: ["gzip", site?.gzip_enabled ?? true],
    security_headers: ["Security headers", site?.security_headers ?? true],
    access_log_enabled: ["Access log", site?.access_log_enabled ?? true],
  };
  const checks = Object.fromEntries(
    Object.entries(flags).map(([name, [, value]]) => [
      name,
      h("input", { type: "checkbox", name, checked: value }),
    ]),
  );
  const locations = h("div", {}, (site?.locations || [{ path: "/", backend: "" }]).map(locationRow));
  const feedback = h("div", { class: "site-feedback" });
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h(
      "div",
      { class: "field-row" },
      field("Site id", inputs.id, editing ? "The id cannot change." : "Letters, digits, - and _."),
      field("Listen port", inputs.listen_port),
    ),
    field("Server names", inputs.server_name, "Space-separated host names; empty answers any host."),
    h(
      "fieldset",
      { class: "field" },
      h("legend", { text: "Locations" }),
      locations,
      button("Add location", () => locations.append(locationRow({ path: "", backend: "" })), {
        kind: "small",
      }),
    ),
    h(
      "details",
      { class: "advanced", open: editing && (site.ssl_cert || site.rate_limit_global) ? true : null },
      h("summary", { text: "TLS and more" }),
      h(
        "div",
        { class: "form" },
        h(
          "div",
          { class: "field-row" },
          field("Certificate file", inputs.ssl_cert),
          field("Key file", inputs.ssl_key),
        ),
        field("Rate limit", inputs.rate_limit_global, "Per client IP, e.g. 10r/s or 300r/m."),
        h(
          "div",
          { class: "checks" },
          Object.entries(flags).map(([name, [label]]) => h("label", { class: "check" }, checks[name], label)),
        ),
      ),
    ),
    feedback,
  );
  const read = () => {
    const body = {
      id: inputs.id.value.trim(),
      server_name: inputs.server_name.value.trim() || null,
      listen_port: Number(inputs.listen_port.value),
      locations: [...locations.children].map((row) => row.read()),
      ssl_cert: inputs.ssl_cert.value.trim() || null,
      ssl_key: inputs.ssl_key.value.trim() || null,
      rate_limit_global: inputs.rate_limit_global.value.trim() || null,
    };
    for (const [name, input] of Object.entries(checks)) body[name] = input.checked;
    if (site?.upstream) body.upstream = site.upstream;
    return body;
  };
  const validate = async () => {
    clear(
      feedback,
      h(
        "p",
        { class: "muted" },
        h("span", { class: "spinner small", "aria-hidden": "true" }),
        " Checking with nginx -t…",
      ),
    );
    showFieldErrors(form, {});
    try {
      await api.api("/api/configs/validate", { method: "POST", json: read() });
      return true;
    } catch (error) {
      showError(form, feedback, error);
      return false;
    }
  };
  const checkButton = button("Check with nginx", async () => {
    if (await validate()) clear(feedback, notice("ok", "nginx accepts this configuration."));
  });
  // The dialog's footer is outside the form: its button submits the form explicitly.
  const save = button(editing ? "Save changes" : "Create site", () => form.requestSubmit(), {
    kind: "primary",
  });
  const view = modal(editing ? `Edit ${site.id}` : "New site", form, [checkButton, save]);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = checkButton.disabled = true;
    try {
      if (!(await validate())) return;
      const path = editing ? `/api/configs/${encodeURIComponent(site.id)}` : "/api/configs";
      await api.api(path, { method: editing ? "PUT" : "POST", json: read() });
      toast(editing ? `${site.id} saved; nginx reloaded.` : "Site created; nginx reloaded.", "ok");
      view.close();
      reload();
    } catch (error) {
      showError(form, feedback, error);
    } finally {
      save.disabled = checkButton.disabled = false;
    }
  });
  inputs[editing ? "server_name" : "id"].focus();
}

/** nginx's own text when it rejected the configuration; field errors next to the fields. */
function showError(form, feedback, error) {
  if (error.body && typeof error.body.output === "string" && error.body.valid === false) {
    clear(
      feedback,
      notice(
        "error",
        "nginx rejected this configuration. Nothing was changed. nginx says:",
        error.body.output,
      ),
    );
    return;
  }
  const unplaced = showFieldErrors(form, error.fields);
  const placed = Object.keys(error.fields || {}).length > unplaced.length;
  clear(
    feedback,
    notice("error", placed && !unplaced.length ? "Fix the marked fields and try again." : error.message),
  );
}

// ---- pools ---------------------------------------------------------------------------------

async function listPools(body) {
  if (!api.offers("GET", "/api/load-balancer/pools")) {
    clear(body, unavailable("Load balancing", "/api/load-balancer/pools"));
    return;
  }
  const pools = await loadList(body, {
    loadingText: "Loading pools…",
    read: async () => (await api.api("/api/load-balancer/pools")).pools,
    retry: () => listPools(body),
    empty: [
      "No pools",
      h(
        "span",
        {},
        "A pool spreads a site's traffic over several servers. Create one with ",
        h("code", { text: "POST /api/load-balancer/pools" }),
        "; then use its name as a location's backend.",
      ),
    ],
  });
  if (!pools) return;
  clear(
    body,
    dataTable(
      ["Pool", "Method", "Servers", "Health check"],
      pools.map((pool) =>
        h(
          "tr",
          {},
          h("td", {}, h("strong", { text: pool.name })),
          h("td", { text: pool.method.replace("_", " ") }),
          h(
            "td",
            {},
            pool.servers.map((s) =>
              h("span", {
                class: "sub mono",
                text: `${s.address}${s.backup ? " (backup)" : ""} ×${s.weight}`,
              }),
            ),
          ),
          h(
            "td",
            {},
            chip(pool.health_check ? `on ${pool.health_path}` : "off", pool.health_check ? "ok" : ""),
          ),
        ),
      ),
    ),
  );
}
