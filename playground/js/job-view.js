// One job, followed live: status, queue position and ETA, progress, the HLS preview while it
// renders (hls.js, or the browser's own HLS), then the mp4, its sync score, timings and cost.
(function (P) {
  "use strict";

  const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"]);
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);

  function when(iso) {
    if (!iso) return "—";
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const clock = new Date(iso).toLocaleTimeString();
    return seconds >= 0 ? `in ${seconds} s (${clock})` : `${-seconds} s ago (${clock})`;
  }

  function timings(job) {
    return Object.entries(job.timings || {})
      .filter(([, ms]) => ms !== null && ms !== undefined)
      .map(([stage, ms]) => `${stage.replace(/_ms$/, "")} ${Math.round(ms)} ms`)
      .join(", ") || "—";
  }

  class JobView {
    constructor(onChange) {
      this.onChange = onChange; // called when a job reaches a final status (to refresh lists)
      this.generation = 0;
      $("cancel").addEventListener("click", () => this.cancel(false));
      $("purge").addEventListener("click", () => this.cancel(true));
      $("download").addEventListener("click", () => this.download());
      const preview = $("preview");
      preview.addEventListener("timeupdate", () => {
        if (preview.currentTime > 0) this.previewState("playing");
      });
    }

    // Follow `jobId` (replacing any job followed before); `first` is the 202's body, if any.
    track(api, jobId, first, idempotencyKey) {
      const sameJob = jobId === this.jobId;
      this.stopPreview();
      this.api = api;
      this.jobId = jobId;
      this.generation += 1;
      $("job").hidden = false;
      $("job-id").textContent = jobId;
      if (!sameJob || idempotencyKey) $("job-idempotency-key").textContent = idempotencyKey || "—";
      $("job-error").textContent = "";
      $("preview-figure").hidden = true;
      this.previewState("none");
      $("result-figure").hidden = true;
      $("job-metrics").hidden = true;
      $("result").removeAttribute("src");
      if (first) this.render(first);
      this.poll(this.generation);
    }

    async poll(generation) {
      while (generation === this.generation) {
        try {
          const job = await this.api.get(`/v1/jobs/${encodeURIComponent(this.jobId)}`);
          if (generation !== this.generation) return;
          this.render(job);
          if (FINAL.has(job.status)) {
            this.finish(job);
            return;
          }
        } catch (error) {
          $("job-error").textContent = `reading the status failed: ${error.message}`;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    }

    render(job) {
      $("job-status").textContent = job.status;
      $("job-status").dataset.status = job.status;
      $("job-queue").textContent = job.queue_position ?? "—";
      $("job-eta-start").textContent = when(job.estimated_start_at);
      $("job-eta-done").textContent = when(job.estimated_done_at);
      $("job-progress").value = job.progress ?? 0;
      $("job-frames").textContent = job.frames_total
        ? `${job.frames_done ?? 0} / ${job.frames_total} frames` : "";
      if (job.error) $("job-error").textContent = `${job.error.code}: ${job.error.message}`;
      const rendering = !FINAL.has(job.status); // after the render, the mp4 is what to play
      if (job.preview_url && !this.previewUrl && rendering) this.startPreview(job.preview_url);
    }

    startPreview(url) {
      this.previewUrl = url;
      const video = $("preview");
      $("preview-figure").hidden = false;
      this.previewState("loading");
      if (window.Hls && window.Hls.isSupported()) {
        this.hls = new window.Hls({ enableWorker: true });
        this.hls.on(window.Hls.Events.ERROR, (_, data) => {
          if (!data.fatal) return;
          // Links expire or a segment 403s: drop this player; the next status read signs anew.
          this.previewState(`error: ${data.details}`);
          this.stopPreview();
        });
        this.hls.loadSource(url);
        this.hls.attachMedia(video);
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = url;
      } else {
        this.previewState("this browser plays no HLS");
        return;
      }
      video.play().catch(() => {}); // muted autoplay; the controls are there if it is refused
    }

    stopPreview() {
      if (this.hls) this.hls.destroy();
      this.hls = null;
      this.previewUrl = null;
    }

    previewState(state) {
      $("preview-state").textContent = `(${state})`;
      $("preview").dataset.state = state;
    }

    finish(job) {
      // What the preview already buffered stays playable; stop fetching the playlist.
      if (this.hls) this.hls.stopLoad();
      if (job.status === "SUCCEEDED") {
        this.job = job;
        $("result").src = job.output_url;
        $("result-figure").hidden = false;
        $("job-metrics").hidden = false;
        $("job-sync").textContent = job.sync_confidence === null ? "—"
          : `${job.sync_confidence.toFixed(3)}${job.low_sync ? " (low sync: below the job's threshold)" : ""}`;
        $("job-weights").textContent = job.weights || "—";
        $("job-timings").textContent = timings(job);
        $("job-gpu-seconds").textContent = job.gpu_seconds ?? "—";
        $("job-cost").textContent = job.estimated_cost_usd === null || job.estimated_cost_usd === undefined
          ? "unknown (no price for the instance type)" : `$${job.estimated_cost_usd.toFixed(4)}`;
      }
      this.onChange();
    }

    async download() {
      const job = await this.api.get(`/v1/jobs/${encodeURIComponent(this.jobId)}`); // a fresh link
      try {
        const response = await fetch(job.output_url);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = `${job.job_id}.mp4`;
        link.click();
        setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      } catch (_) {
        window.open(job.output_url, "_blank", "noopener"); // the outputs bucket's CORS refused
      }
    }

    async cancel(purge) {
      if (purge && !confirm("Cancel this job and erase its media (uploads, avatar, output) now?")) {
        return;
      }
      let outcome = "";
      try {
        const path = `/v1/jobs/${encodeURIComponent(this.jobId)}${purge ? "?purge=true" : ""}`;
        const answer = await this.api.delete(path);
        outcome = answer.purged ? "cancelled; media erased" : "cancelled";
      } catch (error) {
        outcome = `${error.code}: ${error.message}`;
      }
      this.track(this.api, this.jobId, null, null);
      $("job-error").textContent = outcome;
    }
  }

  P.JobView = JobView;
})(window.Playground = window.Playground || {});
