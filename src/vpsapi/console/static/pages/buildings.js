// Buildings: energy per period and the latest sensor readings, live over Socket.IO.
import * as api from "../api.js";
import { TimeChart } from "../charts.js";
import { SocketIO } from "../socketio.js";
import {
  ago,
  card,
  chip,
  clear,
  errorState,
  h,
  loading,
  notice,
  num,
  pageHead,
  state,
} from "../ui.js";

const BASE = "/api/v1/citypulse";
const PERIODS = [
  { key: "day", label: "24 hours", hours: 24, step: "1h" },
  { key: "week", label: "7 days", hours: 24 * 7, step: "1d" },
  { key: "month", label: "30 days", hours: 24 * 30, step: "1d" },
];
const HOUR_MS = 3_600_000;
const ENERGY_RELOAD_MS = 15_000;

export default {
  render(main) {
    const view = new BuildingsView(main);
    view.start();
    return () => view.stop();
  },
};

class BuildingsView {
  constructor(main) {
    this.main = main;
    this.period = PERIODS[0];
    this.building = null;
    this.readingCards = new Map();
    this.stopped = false;
  }

  start() {
    this.listBody = h("div");
    this.detail = h("div");
    this.liveChip = h("span", { class: "live-dot" });
    clear(
      this.main,
      pageHead("Buildings", "Energy use per period and the latest sensor readings.", this.liveChip),
      h("div", { class: "split" }, card("Buildings", { flush: true }, this.listBody), this.detail),
    );
    this.socket = new SocketIO("/ws/", {
      onEvent: (event, data) => this.live(event, data),
      onState: (stateName) => this.setLive(stateName),
    });
    this.socket.connect();
    this.loadBuildings();
  }

  stop() {
    this.stopped = true;
    this.socket.close();
    clearTimeout(this.energyTimer);
    this.chart?.destroy();
  }

  setLive(stateName) {
    const text = {
      connected: "live",
      connecting: "connecting…",
      reconnecting: "reconnecting…",
      refused: "live updates refused",
    }[stateName];
    const tone = { connected: "ok", reconnecting: "warn", refused: "bad" }[stateName] || "";
    clear(this.liveChip, chip(text, tone, stateName === "connected"));
  }

  async loadBuildings() {
    clear(this.listBody, loading("Loading buildings…"));
    clear(this.detail);
    let buildings;
    try {
      buildings = (await api.api(`${BASE}/buildings?limit=200`)).data.items;
    } catch (error) {
      clear(
        this.listBody,
        errorState(error, () => this.loadBuildings()),
      );
      return;
    }
    if (!buildings.length) {
      clear(
        this.listBody,
        state(
          "empty",
          "No buildings yet",
          h(
            "span",
            {},
            "A manager adds them with ",
            h("code", { text: `POST ${BASE}/buildings` }),
            ", then their sensors and readings.",
          ),
        ),
      );
      clear(
        this.detail,
        card(
          "Energy",
          {},
          state("empty", "Nothing to show", "Energy and readings appear once a building exists."),
        ),
      );
      return;
    }
    const items = buildings.map((b) => {
      const item = h(
        "button",
        { type: "button", class: "item", "data-building-id": b.id },
        h("strong", { text: b.name }),
        h("span", { class: "sub", text: [b.buildingType, b.city].filter(Boolean).join(" · ") || "—" }),
      );
      item.addEventListener("click", () => this.select(b, item));
      return h("li", {}, item);
    });
    clear(this.listBody, h("ul", { class: "list" }, items));
    this.select(buildings[0], items[0].firstChild);
  }

  select(building, item) {
    for (const el of this.listBody.querySelectorAll("[aria-current]")) el.removeAttribute("aria-current");
    item.setAttribute("aria-current", "true");
    const previous = this.building;
    this.building = building;
    this.socket.whenConnected(() => {
      if (previous) this.socket.emit("unsubscribe", { buildingId: previous.id });
      if (this.building === building) this.socket.emit("subscribe", { buildingId: building.id });
    });
    this.renderDetail();
  }

  renderDetail() {
    const b = this.building;
    this.chartBox = h("div", { class: "chart-box", "data-chart": "energy" });
    this.totals = h("div", { class: "stats" });
    this.readings = h("div");
    const periodButtons = PERIODS.map((p) => {
      const el = h("button", { type: "button", "aria-pressed": String(p === this.period), text: p.label });
      el.addEventListener("click", () => {
        this.period = p;
        for (const other of el.parentElement.children)
          other.setAttribute("aria-pressed", String(other === el));
        this.loadEnergy();
      });
      return el;
    });
    this.chart?.destroy();
    clear(
      this.detail,
      card(
        `Energy · ${b.name}`,
        {
          subtitle:
            [b.address, b.city].filter(Boolean).join(", ") || "kWh per period from the electricity sensors",
          actions: [h("div", { class: "segmented", role: "group", "aria-label": "Period" }, periodButtons)],
        },
        this.totals,
        this.chartBox,
      ),
      card("Latest readings", { subtitle: "Updated live as sensors report." }, this.readings),
    );
    this.chart = new TimeChart(this.chartBox, {
      series: [{ label: "kWh" }],
      bars: true,
      format: (v) => `${v.toFixed(1)} kWh`,
      empty: "No electricity readings in this period.",
    });
    this.loadEnergy();
    this.loadReadings();
  }

  async loadEnergy() {
    const building = this.building;
    const to = new Date();
    const from = new Date(to.getTime() - this.period.hours * HOUR_MS);
    const params = new URLSearchParams({
      building: building.id,
      from: from.toISOString(),
      to: to.toISOString(),
      step: this.period.step,
    });
    clear(
      this.totals,
      h(
        "div",
        { class: "muted small" },
        h("span", { class: "spinner small", "aria-hidden": "true" }),
        " Loading energy…",
      ),
    );
    let report;
    try {
      report = (await api.api(`${BASE}/energy?${params}`)).data;
    } catch (error) {
      clear(this.totals, notice("error", `Energy could not be loaded: ${error.message}`));
      return;
    }
    if (this.building !== building || this.stopped) return;
    this.chart.setData(
      report.buckets.map((x) => x.timestamp),
      [report.buckets.map((x) => x.kwh)],
    );
    const change = report.comparison?.changePercent;
    const stat = (label, value, sub) =>
      h(
        "div",
        { class: "stat" },
        h("div", { class: "label", text: label }),
        h("div", { class: "value", text: value }),
        sub ? h("div", { class: "sub", text: sub }) : null,
      );
    clear(
      this.totals,
      stat(
        "Energy",
        `${num(report.totals.kwh, 1)} kWh`,
        change == null ? "no earlier data" : `${change > 0 ? "+" : ""}${num(change, 1)}% vs previous`,
      ),
      stat("Peak", `${num(report.totals.peakKw, 1)} kW`),
      stat("Cost", `${num(report.totals.cost, 2)} ${report.currency}`, `at ${report.tariffPerKwh} per kWh`),
    );
  }

  async loadReadings() {
    const building = this.building;
    clear(this.readings, loading("Loading sensors…"));
    let sensors;
    try {
      sensors = (await api.api(`${BASE}/buildings/${encodeURIComponent(building.id)}/sensors`)).data;
    } catch (error) {
      clear(
        this.readings,
        errorState(error, () => this.loadReadings()),
      );
      return;
    }
    if (this.building !== building || this.stopped) return;
    if (!sensors.length) {
      clear(
        this.readings,
        state(
          "empty",
          "No sensors in this building",
          h(
            "span",
            {},
            "Add one with ",
            h("code", { text: `POST ${BASE}/buildings/${building.id}/sensors` }),
            "; its readings show here.",
          ),
        ),
      );
      return;
    }
    this.readingCards.clear();
    const cards = sensors.map((sensor) => {
      const value = h("div", { class: "value", text: "—" });
      const at = h("div", { class: "sub muted small", text: "no readings yet" });
      const el = h(
        "div",
        { class: "reading", "data-sensor-id": sensor.id },
        h("div", { class: "small muted", text: `${sensor.name} · ${sensor.kind}` }),
        value,
        at,
      );
      this.readingCards.set(sensor.id, { el, value, at, sensor });
      return el;
    });
    clear(this.readings, h("div", { class: "readings" }, cards));
    // The newest value per sensor: the last 5-minute bucket of the last day.
    const to = new Date();
    const from = new Date(to.getTime() - 24 * HOUR_MS);
    await Promise.all(
      sensors.map(async (sensor) => {
        const params = new URLSearchParams({
          from: from.toISOString(),
          to: to.toISOString(),
          step: "5m",
          agg: "last",
        });
        try {
          const points = (
            await api.api(`${BASE}/sensors/${encodeURIComponent(sensor.id)}/readings?${params}`)
          ).data.points;
          const last = points[points.length - 1];
          if (last) this.showReading(sensor.id, last.value, last.timestamp, false);
        } catch {
          this.readingCards.get(sensor.id)?.at.replaceChildren("readings unavailable");
        }
      }),
    );
  }

  showReading(sensorId, value, timestamp, flash) {
    const card = this.readingCards.get(sensorId);
    if (!card) return;
    card.value.textContent = `${num(value, 1)} ${card.sensor.unit}`;
    card.at.textContent = ago(timestamp);
    card.at.title = new Date(timestamp).toLocaleString();
    if (flash) {
      card.el.classList.remove("flash");
      void card.el.offsetWidth; // restart the animation
      card.el.classList.add("flash");
    }
  }

  live(event, data) {
    if (!this.building || data?.buildingId !== this.building.id) return;
    if (event === "sensor:reading") this.showReading(data.sensorId, data.value, data.timestamp, true);
    else if (event === "energy:update" && !this.energyTimer) {
      // Power changes often; the period's totals are re-read at most every 15 s.
      this.energyTimer = setTimeout(() => {
        this.energyTimer = null;
        if (!this.stopped) this.loadEnergy();
      }, ENERGY_RELOAD_MS);
    }
  }
}
