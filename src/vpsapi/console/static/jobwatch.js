// Follow one job's progress over the API's Server-Sent Events stream.
import * as api from "./api.js";

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const MAX_RECONNECTS = 5;

/**
 * Calls `onUpdate(job)` on every change and `onEnd(job|null)` once when the job reached a
 * terminal state (or the stream gave up). A dropped connection is reopened with a fresh
 * token, resuming after the last event seen. Returns a function that stops following.
 */
export function followJob(jobId, onUpdate, onEnd = () => {}) {
  let source = null;
  let lastEventId = "";
  let reconnects = 0;
  let timer = null;
  let done = false;
  let last = null;

  const end = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    source?.close();
    onEnd(last);
  };

  const open = () => {
    const params = lastEventId ? { lastEventId } : {};
    source = new EventSource(api.streamUrl(`/api/sse/job-progress/${encodeURIComponent(jobId)}`, params));
    source.addEventListener("message", (event) => {
      lastEventId = event.lastEventId || lastEventId;
      last = JSON.parse(event.data);
      reconnects = 0;
      onUpdate(last);
      if (TERMINAL.has(last.status)) end();
    });
    source.addEventListener("error", (event) => {
      if (done) return;
      if (event.data) {
        // The server's own `event: error` (an unknown job); the stream ends after it.
        last = { jobId, status: "FAILED", error: JSON.parse(event.data).error };
        onUpdate(last);
        end();
        return;
      }
      source.close();
      if (++reconnects > MAX_RECONNECTS) {
        end();
        return;
      }
      timer = setTimeout(open, 1000 * reconnects);
    });
  };

  open();
  return () => {
    done = true;
    clearTimeout(timer);
    source?.close();
  };
}
