// Certificates: what SSL_CERT_DIR holds, days left, and renewal (an ACME job with progress).
import * as api from "../api.js";
import { followJob } from "../jobwatch.js";
import {
  button,
  card,
  chip,
  clear,
  dataTable,
  h,
  loadList,
  pageHead,
  progressBar,
  toast,
  when,
} from "../ui.js";

const STATUS_TONE = { valid: "ok", expiring: "warn", expired: "bad", invalid: "bad" };
const RENEW_PATH = "/api/ssl/renew/{domain}";

export default {
  render(main) {
    const body = h("div");
    const watchers = new Set();
    const failures = new Map(); // domain -> why its last renewal here failed
    const reload = () => list(body, reload, watchers, failures);
    clear(
      main,
      pageHead(
        "Certificates",
        "TLS certificates nginx can use; ACME ones renew by themselves before they expire.",
        button("Refresh", reload, { kind: "small" }),
      ),
      card("Certificates", { flush: true }, body),
    );
    reload();
    return () => {
      for (const stop of watchers) stop();
    };
  },
};

async function list(body, reload, watchers, failures) {
  const certificates = await loadList(body, {
    loadingText: "Reading certificates…",
    read: async () => (await api.api("/api/ssl/certificates")).certificates,
    retry: reload,
    empty: [
      "No certificates yet",
      h(
        "span",
        {},
        "Upload one with ",
        h("code", { text: "POST /api/ssl/upload" }),
        " or request one from Let's Encrypt with ",
        h("code", { text: "POST /api/ssl/request-letsencrypt" }),
        "; it then appears here with its expiry.",
      ),
    ],
  });
  if (!certificates) return;
  const canRenew = api.offers("POST", RENEW_PATH);
  const rows = certificates.map((cert) => {
    const progressCell = h("td", { class: "actions-cell" });
    const renew = () => renewCertificate(cert, progressCell, reload, watchers, failures);
    clear(
      progressCell,
      canRenew && cert.auto_renew
        ? button("Renew", renew, { kind: "small", "aria-label": `Renew ${cert.domain}` })
        : h("span", { class: "muted small", text: cert.auto_renew ? "" : "renewed by hand" }),
      failures.has(cert.domain)
        ? h("span", { class: "sub field-error", text: `Last renewal failed: ${failures.get(cert.domain)}` })
        : null,
    );
    const days = cert.days_left;
    return h(
      "tr",
      { "data-domain": cert.domain },
      h(
        "td",
        {},
        h("strong", { text: cert.domain }),
        h("span", { class: "sub", text: (cert.names || []).join(", ") }),
      ),
      h("td", { class: "hide-phone", text: cert.issuer || "—" }),
      h("td", { class: "nowrap", text: when(cert.expires || cert.not_after) }),
      h(
        "td",
        { class: "num" },
        days == null ? "—" : chip(`${days} d`, days < 0 ? "bad" : days < 30 ? "warn" : "ok"),
      ),
      h(
        "td",
        {},
        chip(cert.status, STATUS_TONE[cert.status] || ""),
        cert.error ? h("span", { class: "sub", text: cert.error }) : null,
      ),
      progressCell,
    );
  });
  clear(
    body,
    dataTable(["Certificate", ["Issuer", "hide-phone"], "Expires", "Days left", "Status", ""], rows),
  );
}

async function renewCertificate(cert, cell, reload, watchers, failures) {
  const bar = progressBar(0);
  clear(cell, bar.root);
  let accepted;
  try {
    accepted = await api.api(`/api/ssl/renew/${encodeURIComponent(cert.domain)}`, { method: "POST" });
  } catch (error) {
    toast(error.message, "error");
    reload();
    return;
  }
  const stop = followJob(
    accepted.jobId || accepted.job_id,
    (job) =>
      bar.set(job.progress, job.status === "COMPLETED" ? "done" : job.status === "FAILED" ? "failed" : ""),
    (job) => {
      watchers.delete(stop);
      if (job?.status === "COMPLETED") {
        failures.delete(cert.domain);
        toast(`${cert.domain} renewed.`, "ok");
      } else {
        failures.set(cert.domain, job?.error || "see the job on the Jobs page");
        toast(`Renewal of ${cert.domain} failed.`, "error");
      }
      reload();
    },
  );
  watchers.add(stop);
}
