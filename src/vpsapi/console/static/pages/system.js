// System: live host and request charts (WS /ws/monitoring on top of the stored history),
// active alerts with resolve, and the alert-rule editor.
import * as api from "../api.js";
import { TimeChart } from "../charts.js";
import {
  ago,
  button,
  bytes,
  card,
  chip,
  clear,
  confirmDialog,
  dataTable,
  duration,
  errorState,
  h,
  loading,
  modal,
  notice,
  num,
  pageHead,
  showFieldErrors,
  state,
  toast,
} from "../ui.js";

const SEVERITY_TONE = { info: "info", warning: "warn", critical: "bad" };
const METRICS = [
  ["cpu_usage", "CPU %"],
  ["memory_usage", "Memory %"],
  ["disk_usage", "Disk %"],
  ["load_average", "Load average"],
  ["network_in", "Network in (bytes/s)"],
  ["network_out", "Network out (bytes/s)"],
  ["requests_per_second", "Requests/s"],
  ["error_rate", "Error rate (% 5xx)"],
  ["response_time_p95", "p95 latency (ms)"],
  ["nginx_connections", "nginx connections"],
  ["nginx_requests_per_second", "nginx requests/s"],
];
const CHARTS = [
  {
    title: "CPU, memory and disk",
    keys: ["cpu_usage", "memory_usage", "disk_usage"],
    labels: ["CPU", "Memory", "Disk"],
    format: (v) => `${v.toFixed(0)}%`,
  },
  {
    title: "Network",
    keys: ["network_in", "network_out"],
    labels: ["In", "Out"],
    format: (v) => `${bytes(v)}/s`,
  },
  {
    title: "Request rate",
    keys: ["requests_per_second"],
    labels: ["Requests/s"],
    format: (v) => v.toFixed(1),
  },
  {
    title: "p95 latency",
    keys: ["response_time_p95"],
    labels: ["p95 (ms)"],
    format: (v) => `${v.toFixed(0)} ms`,
  },
];
const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];

export default {
  render(main) {
    const view = new SystemView(main);
    view.start();
    return () => view.stop();
  },
};

class SystemView {
  constructor(main) {
    this.main = main;
    this.stopped = false;
    this.socket = null;
    this.attempt = 0;
    this.alertIds = null;
  }

  start() {
    this.liveChip = h("span", { class: "live-dot" }, chip("connecting…"));
    this.stats = h("div", { class: "stats", "aria-label": "Current figures" });
    this.alertsBody = h("div");
    this.rulesBody = h("div");
    this.hostBody = h("div");
    const chartCards = CHARTS.map((spec) => {
      const box = h("div", { class: "chart-box", "data-chart": spec.keys[0] });
      spec.box = box;
      return card(spec.title, {}, box);
    });
    clear(
      this.main,
      pageHead(
        "System",
        "Host and API figures, sampled by the server; live while this page is open.",
        this.liveChip,
      ),
      this.stats,
      h("div", { class: "grid-charts" }, chartCards),
      api.offers("GET", "/api/system/status") ? card("Host and nginx", {}, this.hostBody) : null,
      card("Active alerts", { subtitle: "Raised by the alert rules below.", flush: true }, this.alertsBody),
      card(
        "Alert rules",
        {
          subtitle:
            "When a figure crosses a threshold for a while, an alert fires (and is sent by email or webhook).",
          actions: [button("New rule", () => this.editRule(null), { kind: "primary small" })],
          flush: true,
        },
        this.rulesBody,
      ),
    );
    this.charts = CHARTS.map(
      (spec) =>
        new TimeChart(spec.box, {
          series: spec.labels.map((label) => ({ label })),
          format: spec.format,
          empty: "Waiting for the first samples…",
        }),
    );
    this.renderStats(null);
    clear(this.alertsBody, loading("Loading alerts…"));
    this.loadHistory();
    if (api.offers("GET", "/api/system/status")) this.loadHost();
    this.loadAlerts();
    this.loadRules();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this.socket) this.socket.close(1000);
    for (const chart of this.charts) chart.destroy();
  }

  // ---- metrics ----------------------------------------------------------------------------

  async loadHistory() {
    try {
      const history = await api.api("/api/monitoring/metrics/history");
      const points = history.metrics || [];
      const times = points.map((p) => p.timestamp);
      CHARTS.forEach((spec, i) =>
        this.charts[i].setData(
          times,
          spec.keys.map((k) => points.map((p) => p[k] ?? null)),
        ),
      );
      if (points.length) this.renderStats(points[points.length - 1]);
    } catch (error) {
      this.main
        .querySelector(".stats")
        .after(notice("warn", `History could not be loaded (${error.message}); live samples still appear.`));
    }
    if (!this.stopped) this.connect();
  }

  connect() {
    this.setLive("connecting…", "");
    const socket = new WebSocket(api.socketUrl("/ws/monitoring"));
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.setLive("live", "ok", true);
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "metrics") return;
      const sample = message.system;
      CHARTS.forEach((spec, i) =>
        this.charts[i].push(
          sample.timestamp || message.timestamp,
          spec.keys.map((k) => sample[k]),
        ),
      );
      this.renderStats(sample);
      if (Array.isArray(message.alerts)) this.renderAlerts(message.alerts);
    });
    socket.addEventListener("close", (event) => {
      if (this.stopped) return;
      if (event.code === 1008) {
        this.setLive("signed out", "bad");
        return;
      }
      const delay = RECONNECT_MS[Math.min(this.attempt, RECONNECT_MS.length - 1)];
      this.attempt += 1;
      this.setLive(`reconnecting in ${delay / 1000} s`, "warn");
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  setLive(text, tone, live = false) {
    clear(this.liveChip, chip(text, tone, live));
  }

  renderStats(sample) {
    const value = (key, digits, suffix) => (sample ? num(sample[key], digits, suffix) : "—");
    const stat = (label, text, sub) =>
      h(
        "div",
        { class: "stat" },
        h("div", { class: "label", text: label }),
        h("div", { class: "value", text }),
        sub ? h("div", { class: "sub", text: sub }) : null,
      );
    clear(
      this.stats,
      stat(
        "CPU",
        value("cpu_usage", 0, "%"),
        sample?.load_average != null ? `load ${num(sample.load_average, 2)}` : null,
      ),
      stat("Memory", value("memory_usage", 0, "%")),
      stat("Disk", value("disk_usage", 0, "%")),
      stat("Network in", sample ? `${bytes(sample.network_in)}/s` : "—"),
      stat("Network out", sample ? `${bytes(sample.network_out)}/s` : "—"),
      stat(
        "Requests/s",
        value("requests_per_second", 1),
        sample?.error_rate != null ? `${num(sample.error_rate, 1)}% errors` : null,
      ),
      stat("p95 latency", value("response_time_p95", 0, " ms")),
    );
  }

  // ---- host and nginx ---------------------------------------------------------------------

  async loadHost() {
    clear(this.hostBody, loading("Reading the host…"));
    let host;
    try {
      host = await api.api("/api/system/status");
    } catch (error) {
      clear(
        this.hostBody,
        errorState(error, () => this.loadHost()),
      );
      return;
    }
    const gb = (used, total) => `${num(used, 1)} of ${num(total, 1)} GB`;
    const nginxAction = (action, label, confirmText) =>
      button(
        label,
        async () => {
          if (
            confirmText &&
            !(await confirmDialog(`${label}?`, confirmText, { confirm: label, danger: true }))
          )
            return;
          try {
            const answer = await api.api(`/api/system/nginx/${action}`, { method: "POST" });
            toast(answer.message, "ok");
          } catch (error) {
            toast(error.message, "error");
          }
          this.loadHost();
        },
        { kind: "small" },
      );
    clear(
      this.hostBody,
      h(
        "dl",
        { class: "facts" },
        [
          ["Host", `${host.hostname} · up ${host.uptime}`],
          ["CPU", `${host.cpu_count} cores · load ${host.load_averages.map((v) => num(v, 2)).join(" / ")}`],
          ["Memory", gb(host.memory_used, host.memory_total)],
          ["Disk", gb(host.disk_used, host.disk_total)],
          [
            "nginx",
            h(
              "span",
              {},
              chip(host.nginx_running ? "running" : "stopped", host.nginx_running ? "ok" : "bad"),
              " ",
              host.nginx_version,
            ),
          ],
          [
            "vpsapi",
            `${host.service_version} · pid ${host.api_pid} · up ${duration(host.service_uptime_seconds)}`,
          ],
        ].map(([label, value]) => [h("dt", { text: label }), h("dd", {}, value)]),
      ),
      api.offers("POST", "/api/system/nginx/reload")
        ? h(
            "div",
            { class: "actions" },
            nginxAction("reload", "Reload nginx"),
            nginxAction(
              "restart",
              "Restart nginx",
              "Open connections are cut while nginx restarts. A reload is enough after a configuration change.",
            ),
          )
        : null,
    );
  }

  // ---- alerts -----------------------------------------------------------------------------

  async loadAlerts() {
    try {
      const answer = await api.api("/api/monitoring/alerts?status=active");
      this.renderAlerts(answer.alerts, true);
    } catch (error) {
      clear(
        this.alertsBody,
        errorState(error, () => this.loadAlerts()),
      );
    }
  }

  renderAlerts(alerts, force = false) {
    const ids = alerts.map((a) => a.id).join(",");
    if (ids === this.alertIds && !force) return; // unchanged: keep focus and scroll
    if (this.alertIds !== null && ids !== this.alertIds) this.loadRules(true); // firing changed
    this.alertIds = ids;
    if (!alerts.length) {
      clear(
        this.alertsBody,
        state("empty", "No active alerts", "All rules are quiet. Alerts appear here the moment one fires."),
      );
      return;
    }
    clear(
      this.alertsBody,
      dataTable(
        ["Severity", "Alert", "Since", ""],
        alerts.map((alert) =>
          h(
            "tr",
            {},
            h("td", {}, chip(alert.severity, SEVERITY_TONE[alert.severity] || "")),
            h(
              "td",
              {},
              h("strong", { text: alert.rule_name }),
              h("span", { class: "sub", text: alert.message }),
            ),
            h("td", { class: "nowrap", text: ago(alert.timestamp) }),
            h(
              "td",
              { class: "actions-cell" },
              button("Resolve", () => this.resolve(alert), {
                kind: "small",
                "aria-label": `Resolve ${alert.rule_name}`,
              }),
            ),
          ),
        ),
      ),
    );
  }

  async resolve(alert) {
    try {
      await api.api(`/api/monitoring/alerts/${encodeURIComponent(alert.id)}/resolve`, { method: "POST" });
      toast("Alert resolved.", "ok");
      this.loadAlerts();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  // ---- rules ------------------------------------------------------------------------------

  async loadRules(quiet = false) {
    if (!quiet) clear(this.rulesBody, loading("Loading rules…"));
    let rules;
    try {
      rules = (await api.api("/api/monitoring/alerts/rules")).rules;
    } catch (error) {
      if (!quiet)
        clear(
          this.rulesBody,
          errorState(error, () => this.loadRules()),
        );
      return;
    }
    if (!rules.length) {
      clear(
        this.rulesBody,
        state(
          "empty",
          "No alert rules",
          "Add a rule, e.g. CPU above 90% for 5 minutes, to be told before users notice.",
          button("New rule", () => this.editRule(null), { kind: "primary" }),
        ),
      );
      return;
    }
    const label = Object.fromEntries(METRICS);
    clear(
      this.rulesBody,
      dataTable(
        ["Rule", "Condition", "Severity", "State", ""],
        rules.map((rule) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              h("strong", { text: rule.name }),
              h("span", {
                class: "sub",
                text: rule.channels.length ? `notify: ${rule.channels.join(", ")}` : "no notifications",
              }),
            ),
            h("td", {
              text: `${label[rule.metric] || rule.metric} ${rule.operator} ${rule.threshold}${rule.duration ? ` for ${rule.duration} s` : ""}`,
            }),
            h("td", {}, chip(rule.severity, SEVERITY_TONE[rule.severity] || "")),
            h(
              "td",
              {},
              chip(
                !rule.enabled ? "disabled" : rule.fired ? "firing" : "ok",
                !rule.enabled ? "" : rule.fired ? "bad" : "ok",
              ),
            ),
            h(
              "td",
              { class: "actions-cell" },
              button("Edit", () => this.editRule(rule), {
                kind: "small",
                "aria-label": `Edit rule ${rule.name}`,
              }),
              button("Delete", () => this.deleteRule(rule), {
                kind: "small danger",
                "aria-label": `Delete rule ${rule.name}`,
              }),
            ),
          ),
        ),
      ),
    );
  }

  async deleteRule(rule) {
    if (
      !(await confirmDialog(
        `Delete rule ${rule.name}?`,
        "It stops being checked; its past alerts stay in the history.",
        { confirm: "Delete rule", danger: true },
      ))
    )
      return;
    try {
      await api.api(`/api/monitoring/alerts/rules/${encodeURIComponent(rule.id)}`, { method: "DELETE" });
      toast("Rule deleted.", "ok");
      this.loadRules();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  editRule(rule) {
    const input = (name, props) => h("input", { name, ...props });
    const field = (label, el, hint) =>
      h(
        "label",
        { class: "field" },
        h("span", { text: label }),
        el,
        hint ? h("span", { class: "hint", text: hint }) : null,
      );
    const select = (name, options, value) => {
      const el = h(
        "select",
        { name },
        options.map(([v, t]) => h("option", { value: v, text: t })),
      );
      el.value = value;
      return el;
    };
    const f = {
      name: input("name", { type: "text", value: rule?.name || "", required: true, placeholder: "High CPU" }),
      metric: select("metric", METRICS, rule?.metric || "cpu_usage"),
      operator: select(
        "operator",
        [">", ">=", "<", "<=", "=="].map((o) => [o, o]),
        rule?.operator || ">",
      ),
      threshold: input("threshold", { type: "number", step: "any", value: String(rule?.threshold ?? 90) }),
      duration: input("duration", { type: "number", min: "0", value: String(rule?.duration ?? 300) }),
      severity: select(
        "severity",
        [
          ["info", "info"],
          ["warning", "warning"],
          ["critical", "critical"],
        ],
        rule?.severity || "warning",
      ),
      notification_email: input("notification_email", {
        type: "text",
        value: rule?.notification_email || "",
        placeholder: "ops@example.com",
      }),
      notification_webhook: input("notification_webhook", {
        type: "url",
        value: rule?.notification_webhook || "",
        placeholder: "https://hooks.example.com/…",
      }),
      enabled: input("enabled", { type: "checkbox", checked: rule ? rule.enabled : true }),
    };
    const feedback = h("div");
    const form = h(
      "form",
      { class: "form", novalidate: true },
      feedback,
      field("Name", f.name),
      h(
        "div",
        { class: "field-row" },
        field("Metric", f.metric),
        field("Operator", f.operator),
        field("Threshold", f.threshold),
      ),
      h(
        "div",
        { class: "field-row" },
        field("For (seconds)", f.duration, "0 fires at once"),
        field("Severity", f.severity),
      ),
      field("Email to", f.notification_email, "Comma-separated; empty uses ALERT_EMAIL_TO."),
      field("Webhook URL", f.notification_webhook, "Empty uses ALERT_WEBHOOK_URL."),
      h("label", { class: "check" }, f.enabled, "Enabled"),
    );
    const save = button(rule ? "Save rule" : "Create rule", () => form.requestSubmit(), { kind: "primary" });
    const view = modal(rule ? `Edit rule ${rule.name}` : "New alert rule", form, [save]);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        name: f.name.value.trim(),
        metric: f.metric.value,
        operator: f.operator.value,
        threshold: Number(f.threshold.value),
        duration: Number(f.duration.value || 0),
        severity: f.severity.value,
        notification_email: f.notification_email.value.trim() || null,
        notification_webhook: f.notification_webhook.value.trim() || null,
        enabled: f.enabled.checked,
      };
      save.disabled = true;
      try {
        const path = rule
          ? `/api/monitoring/alerts/rules/${encodeURIComponent(rule.id)}`
          : "/api/monitoring/alerts/rules";
        await api.api(path, { method: rule ? "PUT" : "POST", json: body });
        toast(rule ? "Rule saved." : "Rule created.", "ok");
        view.close();
        this.loadRules();
      } catch (error) {
        const unplaced = showFieldErrors(form, error.fields);
        clear(
          feedback,
          notice(
            "error",
            unplaced.length || !Object.keys(error.fields).length ? error.message : "Fix the marked fields.",
          ),
        );
      } finally {
        save.disabled = false;
      }
    });
    f.name.focus();
  }
}
