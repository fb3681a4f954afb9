// Time-series charts on the vendored uPlot (MIT, static/vendor/uplot): small, fast, no
// dependencies and no inline styles or eval, so it runs under the console's strict CSP.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { clear, h } from "./ui.js";

export const COLORS = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#db2777"];
const HEIGHT = 220;

/**
 * A chart of one or more series over time. `series`: [{label, format?}]; values are pushed
 * as they arrive (`push`) or set at once (`setData`). The container gets `data-points`
 * (how many samples are drawn) so tests and scripts can tell it is alive.
 */
export class TimeChart {
  constructor(
    container,
    { series, format = (v) => String(v), bars = false, maxPoints = 720, empty = "Waiting for data…" },
  ) {
    this.container = container;
    this.maxPoints = maxPoints;
    // A line needs two samples (one alone would stretch the time axis over years).
    this.minPoints = bars ? 1 : 2;
    this.data = [[], ...series.map(() => [])];
    this.plotBox = h("div", { class: "chart" });
    this.placeholder = h("div", { class: "chart-empty", text: empty });
    clear(container, this.placeholder, this.plotBox);
    const width = () => Math.max(280, container.clientWidth || 600);
    this.plot = new uPlot(
      {
        width: width(),
        height: HEIGHT,
        cursor: { drag: { x: false, y: false } },
        legend: { live: false },
        scales: bars
          ? {
              x: { time: true, range: padHalfStep },
              y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
            }
          : { x: { time: true } },
        axes: [
          { stroke: "#64748b", grid: { stroke: "#eef2f7" } },
          {
            stroke: "#64748b",
            grid: { stroke: "#eef2f7" },
            size: axisWidth,
            values: (_u, ticks) => ticks.map(format),
          },
        ],
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: COLORS[i % COLORS.length],
            fill: bars ? `${COLORS[i % COLORS.length]}55` : undefined,
            width: 2,
            spanGaps: false,
            paths: bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
            points: { show: false },
            value: (_u, v) => (v == null ? "—" : format(v)),
          })),
        ],
      },
      this.data,
      this.plotBox,
    );
    this.resizer = new ResizeObserver(() => this.plot.setSize({ width: width(), height: HEIGHT }));
    this.resizer.observe(container);
    this.refresh();
  }

  /** `times` in ms since the epoch (or Date/ISO strings); `columns[i][j]` value of series i. */
  setData(times, columns) {
    this.data = [times.map(toSeconds), ...columns.map((c) => c.slice())];
    this.refresh();
  }

  push(time, values) {
    const t = toSeconds(time);
    const last = this.data[0][this.data[0].length - 1];
    if (last !== undefined && t <= last) return; // an old or repeated sample
    this.data[0].push(t);
    values.forEach((v, i) => this.data[i + 1].push(v ?? null));
    if (this.data[0].length > this.maxPoints) for (const column of this.data) column.shift();
    this.refresh();
  }

  refresh() {
    const count = this.data[0].length;
    this.container.dataset.points = String(count);
    const drawable = count >= this.minPoints;
    this.placeholder.hidden = drawable;
    this.plotBox.hidden = !drawable;
    this.plot.setData(this.data);
  }

  destroy() {
    this.resizer.disconnect();
    this.plot.destroy();
  }
}

/** Room for the longest tick label, so "18.8 KB/s" is not cut to "8.8 KB/s". */
function axisWidth(u, values, axisIdx, cycleNum) {
  if (cycleNum > 1) return u.axes[axisIdx]._size; // keep the size once settled
  const longest = (values || []).reduce((n, v) => Math.max(n, String(v).length), 0);
  return Math.max(56, longest * 7 + 24);
}

/** Bars are centred on their time: leave half a step on both ends so none is cut. */
function padHalfStep(u, min, max) {
  const times = u.data[0];
  const half = times.length > 1 ? (times[1] - times[0]) / 2 : 1800;
  return [min - half, max + half];
}

function toSeconds(time) {
  const ms = typeof time === "number" ? time : new Date(time).getTime();
  return ms / 1000;
}
