// The console shell: sign-in, navigation by role, and a hash router over the pages.
import * as api from "./api.js";
import { button, chip, clear, h, notice, pageHead, unavailable } from "./ui.js";
import backups from "./pages/backups.js";
import buildings from "./pages/buildings.js";
import certificates from "./pages/certificates.js";
import devices from "./pages/devices.js";
import jobs from "./pages/jobs.js";
import sites from "./pages/sites.js";
import system from "./pages/system.js";

// Ops pages change the server itself: admins only (the API enforces it too). A page whose
// API this server does not offer (`needs`: feature and path) explains that instead.
const PAGES = [
  { path: "jobs", title: "Jobs", page: jobs },
  {
    path: "devices",
    title: "Devices",
    page: devices,
    needs: ["Devices", "/api/devices", "Cameras bound to your account."],
  },
  {
    path: "buildings",
    title: "Buildings",
    page: buildings,
    needs: ["CityPulse", "/api/v1/citypulse/buildings", "Energy and sensors."],
  },
  {
    path: "system",
    title: "System",
    page: system,
    admin: true,
    needs: ["Monitoring", "/api/monitoring/metrics/history", "Live host metrics and alerts."],
  },
  {
    path: "sites",
    title: "Sites",
    page: sites,
    admin: true,
    needs: ["Site management", "/api/configs", "nginx sites and load-balancer pools."],
  },
  {
    path: "certificates",
    title: "Certificates",
    page: certificates,
    admin: true,
    needs: ["Certificate management", "/api/ssl/certificates", "TLS certificates nginx can use."],
  },
  {
    path: "backups",
    title: "Backups",
    page: backups,
    admin: true,
    needs: ["Backups", "/api/backup/list", "Archives of the managed configuration."],
  },
];

const root = document.getElementById("app");
let cleanup = null;
let signOutReason = "";

function visiblePages() {
  return PAGES.filter((p) => !p.admin || api.isAdmin());
}

function currentPath() {
  return location.hash.replace(/^#\/?/, "").split("?")[0];
}

// ---- sign in ------------------------------------------------------------------------------

function renderLogin() {
  stopPage();
  const error = h("div", { class: "login-error" });
  const identifier = h("input", {
    type: "text",
    name: "login",
    autocomplete: "username",
    required: true,
    placeholder: "admin@example.com",
  });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = button("Sign in", null, { kind: "primary", type: "submit" });
  const form = h(
    "form",
    { class: "form", novalidate: true },
    error,
    h("label", { class: "field" }, h("span", { text: "Email or username" }), identifier),
    h("label", { class: "field" }, h("span", { text: "Password" }), password),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!identifier.value.trim() || !password.value) {
      clear(error, notice("error", "Enter your email (or username) and your password."));
      return;
    }
    submit.disabled = true;
    clear(submit, h("span", { class: "spinner small", "aria-hidden": "true" }), " Signing in…");
    try {
      await api.login(identifier.value.trim(), password.value);
    } catch (err) {
      const text =
        err.status === 401 ? "Wrong email, username or password. Check them and try again." : err.message;
      clear(error, notice("error", text));
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
      clear(submit, "Sign in");
    }
  });
  clear(
    root,
    h(
      "main",
      { class: "login-wrap", id: "main" },
      h(
        "div",
        { class: "login-card" },
        h(
          "div",
          { class: "brand" },
          h("span", { class: "brand-mark", text: "v" }),
          "vpsapi",
          h("small", { text: "console" }),
        ),
        h("h1", { text: "Sign in" }),
        h("p", { class: "lead", text: "Operate jobs, sites, monitoring and devices of this server." }),
        signOutReason ? notice("info", signOutReason) : null,
        form,
        h(
          "p",
          { class: "login-foot" },
          "The first admin's password is printed at the first start (and saved in ",
          h("code", { text: "data/admin-password" }),
          "). API reference: ",
          h("a", { href: "/docs", text: "/docs" }),
        ),
      ),
    ),
  );
  signOutReason = "";
  identifier.focus();
}

// ---- shell and routing ------------------------------------------------------------------

function renderShell() {
  const user = api.currentUser();
  const nav = h(
    "nav",
    { class: "nav", id: "nav", "aria-label": "Sections" },
    visiblePages().map((p) => h("a", { href: `#/${p.path}`, "data-path": p.path, text: p.title })),
  );
  const toggle = button(
    "Menu",
    () => {
      const open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", String(open));
    },
    { kind: "ghost small menu-toggle", "aria-controls": "nav", "aria-expanded": "false" },
  );
  nav.addEventListener("click", () => {
    nav.classList.remove("open");
    toggle.setAttribute("aria-expanded", "false");
  });
  const main = h("main", { class: "main", id: "main", tabindex: "-1" });
  clear(
    root,
    h(
      "header",
      { class: "topbar" },
      h(
        "div",
        { class: "topbar-inner" },
        h("a", { class: "brand", href: "#/jobs" }, h("span", { class: "brand-mark", text: "v" }), "vpsapi"),
        toggle,
        nav,
        h(
          "div",
          { class: "user-box" },
          h("span", { class: "user-name", text: user.username || user.email }),
          chip(user.role, user.role === "admin" ? "info" : ""),
          button("Sign out", () => api.logout(), { kind: "small" }),
        ),
      ),
    ),
    main,
  );
  route();
}

function stopPage() {
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.warn("page cleanup failed", error);
    }
  }
  cleanup = null;
}

function route() {
  const main = document.getElementById("main");
  if (!main || !api.currentUser()) return;
  const pages = visiblePages();
  const entry = pages.find((p) => p.path === currentPath());
  if (!entry) {
    location.replace(`#/${pages[0].path}`);
    return;
  }
  stopPage();
  for (const link of document.querySelectorAll(".nav a")) {
    if (link.dataset.path === entry.path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${entry.title} · vpsapi console`;
  clear(main);
  if (entry.needs && !api.offers("GET", entry.needs[1])) {
    const [feature, path, subtitle] = entry.needs;
    clear(main, pageHead(entry.title, subtitle), unavailable(feature, path));
    return;
  }
  const context = { admin: api.isAdmin(), user: api.currentUser() };
  cleanup = entry.page.render(main, context) || null;
}

window.addEventListener("hashchange", () => {
  if (!api.currentUser()) return;
  route();
  // Keyboard and screen-reader users land on the new page, not on the old link.
  document.getElementById("main")?.focus({ preventScroll: true });
});

api.onSessionChange((next, reason) => {
  if (reason === "refresh") return; // same user, fresh token: nothing to redraw
  if (next) {
    renderShell();
  } else {
    signOutReason = reason; // shown on the sign-in form
    renderLogin();
  }
});

async function start() {
  await api.loadFeatures();
  try {
    if (await api.resume()) renderShell();
    else renderLogin();
  } catch {
    // A revoked session was cleared (the listener shows the login form with the reason);
    // an unreachable server keeps the session and the pages say the server is unreachable.
    if (api.currentUser()) renderShell();
    else if (!root.querySelector(".login-wrap")) renderLogin();
  }
}

start();
