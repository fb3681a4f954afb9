// Backups: list, create (a job with progress when the server runs it as one), download,
// restore and delete, each destructive step behind a confirmation.
import * as api from "../api.js";
import { followJob } from "../jobwatch.js";
import {
  button,
  bytes,
  card,
  chip,
  clear,
  confirmDialog,
  dataTable,
  downloadBlob,
  h,
  loadList,
  modal,
  pageHead,
  progressBar,
  toast,
  when,
} from "../ui.js";

export default {
  render(main) {
    const body = h("div");
    const progress = h("div", { hidden: true });
    const watchers = new Set();
    const reload = () => list(body, reload);
    const create = button("Create backup", () => createBackup(create, progress, reload, watchers), {
      kind: "primary",
      disabled: !api.offers("POST", "/api/backup/create"),
    });
    clear(
      main,
      pageHead(
        "Backups",
        "Archives of nginx sites, pools, certificates and settings; restore one to roll back.",
        create,
      ),
      progress,
      card("Backups", { flush: true }, body),
    );
    reload();
    return () => {
      for (const stop of watchers) stop();
    };
  },
};

async function list(body, reload) {
  const backups = await loadList(body, {
    loadingText: "Loading backups…",
    read: async () => (await api.api("/api/backup/list")).backups,
    retry: reload,
    empty: [
      "No backups yet",
      "Create one before a risky change: it takes a few seconds and you can restore it from here.",
    ],
  });
  if (!backups) return;
  backups.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  clear(
    body,
    dataTable(
      ["Backup", "Kind", "Created", "Size", ""],
      backups.map((backup) =>
        h(
          "tr",
          { "data-filename": backup.filename },
          h(
            "td",
            {},
            h("span", { class: "mono", text: backup.filename }),
            backup.description ? h("span", { class: "sub", text: backup.description }) : null,
            h("span", { class: "sub", text: contents(backup) }),
          ),
          h(
            "td",
            {},
            chip(
              backup.kind === "safety" ? "before a restore" : "backup",
              backup.kind === "safety" ? "warn" : "",
            ),
          ),
          h("td", { class: "nowrap", text: when(backup.created_at) }),
          h("td", { class: "num", text: bytes(backup.size) }),
          h(
            "td",
            { class: "actions-cell" },
            button("Download", () => download(backup), {
              kind: "small",
              "aria-label": `Download ${backup.filename}`,
            }),
            button("Restore", () => restore(backup, reload), {
              kind: "small",
              "aria-label": `Restore ${backup.filename}`,
            }),
            api.offers("DELETE", "/api/backup/delete/{filename}")
              ? button("Delete", () => remove(backup, reload), {
                  kind: "small danger",
                  "aria-label": `Delete ${backup.filename}`,
                })
              : null,
          ),
        ),
      ),
    ),
  );
}

function contents(backup) {
  const parts = [];
  if (backup.config_count != null) parts.push(`${backup.config_count} nginx files`);
  if (backup.cert_count != null) parts.push(`${backup.cert_count} certificate files`);
  if (backup.database) parts.push(`${backup.database} data`);
  return parts.join(" · ");
}

function createBackup(trigger, progress, reload, watchers) {
  const description = h("input", {
    type: "text",
    name: "description",
    placeholder: "before upgrading nginx",
  });
  const start = button(
    "Create backup",
    async () => {
      view.close();
      trigger.disabled = true;
      const bar = progressBar(0);
      clear(progress, card("Creating a backup…", {}, bar.root));
      progress.hidden = false;
      const finish = (ok, text) => {
        trigger.disabled = false;
        progress.hidden = true;
        toast(text, ok ? "ok" : "error");
        reload();
      };
      let accepted;
      try {
        accepted = await api.api("/api/backup/create", {
          method: "POST",
          json: { description: description.value.trim() || null },
        });
      } catch (error) {
        finish(false, error.message);
        return;
      }
      const jobId = accepted.jobId || accepted.job_id;
      if (!jobId) {
        finish(true, accepted.message || "Backup created.");
        return;
      }
      const stop = followJob(
        jobId,
        (job) => bar.set(job.progress),
        (job) => {
          watchers.delete(stop);
          finish(
            job?.status === "COMPLETED",
            job?.status === "COMPLETED"
              ? "Backup created."
              : `The backup failed: ${job?.error || "see the job"}`,
          );
        },
      );
      watchers.add(stop);
    },
    { kind: "primary" },
  );
  const view = modal(
    "Create a backup",
    h(
      "div",
      { class: "form" },
      h("label", { class: "field" }, h("span", { text: "Description (optional)" }), description),
    ),
    [start],
    { narrow: true },
  );
  description.focus();
}

async function download(backup) {
  try {
    const response = await api.api(`/api/backup/download/${encodeURIComponent(backup.filename)}`, {
      raw: true,
    });
    downloadBlob(await response.blob(), backup.filename);
  } catch (error) {
    toast(error.message, "error");
  }
}

async function restore(backup, reload) {
  const ok = await confirmDialog(
    `Restore ${backup.filename}?`,
    "The sites, pools and certificates in this backup replace the current ones, and nginx reloads. Create a backup first if you may want today's state back.",
    { confirm: "Restore", danger: true },
  );
  if (!ok) return;
  try {
    const answer = await api.api(`/api/backup/restore/${encodeURIComponent(backup.filename)}`, {
      method: "POST",
    });
    const safety = answer?.safety_backup ? ` The previous state is kept as ${answer.safety_backup}.` : "";
    const message = (answer?.message || "Backup restored").replace(/\.?$/, ".");
    toast(`${message}${safety}`, "ok");
    reload();
  } catch (error) {
    toast(error.message, "error");
  }
}

async function remove(backup, reload) {
  if (
    !(await confirmDialog(`Delete ${backup.filename}?`, "The archive is removed from the server for good.", {
      confirm: "Delete",
      danger: true,
    }))
  )
    return;
  try {
    await api.api(`/api/backup/delete/${encodeURIComponent(backup.filename)}`, { method: "DELETE" });
    toast("Backup deleted.", "ok");
    reload();
  } catch (error) {
    toast(error.message, "error");
  }
}
