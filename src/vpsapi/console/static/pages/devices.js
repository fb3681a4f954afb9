// Devices: the cameras bound to the signed-in account, online or not.
import * as api from "../api.js";
import {
  ago,
  button,
  card,
  chip,
  clear,
  dataTable,
  h,
  loadList,
  pageHead,
  when,
} from "../ui.js";

const REFRESH_MS = 30_000;

export default {
  render(main) {
    const body = h("div");
    const reload = () => list(body, reload);
    clear(
      main,
      pageHead(
        "Devices",
        "Cameras bound to your account; the online state refreshes every 30 s.",
        button("Refresh", reload, { kind: "small" }),
      ),
      card("Your devices", { flush: true }, body),
    );
    reload();
    const timer = setInterval(() => list(body, reload, true), REFRESH_MS);
    return () => clearInterval(timer);
  },
};

async function list(body, reload, quiet = false) {
  const devices = await loadList(body, {
    loadingText: "Loading devices…",
    read: () => api.api("/api/devices"),
    retry: reload,
    quiet,
    empty: [
      "No devices bound to your account",
      h(
        "span",
        {},
        "Bind a camera from the mobile app, or with ",
        h("code", { text: "POST /api/devices {vid, name}" }),
        " once the camera has registered with the server.",
      ),
    ],
  });
  if (!devices) return;
  // `lastSeen` is shown when the API sends it (the device list does not carry it yet).
  const lastSeen = (d) => d.lastSeen ?? null;
  clear(
    body,
    dataTable(
      ["Device", "Model", "State", "Last seen"],
      devices.map((d) =>
        h(
          "tr",
          { "data-vid": d.vid },
          h("td", {}, h("strong", { text: d.name }), h("span", { class: "sub mono", text: d.vid })),
          h("td", { text: d.model || "—" }),
          h(
            "td",
            {},
            chip(d.online ? "online" : "offline", d.online ? "ok" : ""),
            d.hasPassword ? h("span", { class: "sub", text: "password saved" }) : null,
          ),
          h("td", {
            class: "nowrap",
            title: when(lastSeen(d)),
            text: lastSeen(d) ? ago(lastSeen(d)) : d.online ? "now" : "—",
          }),
        ),
      ),
    ),
  );
}
