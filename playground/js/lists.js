// The tenant's recent jobs and avatars (newest first), with open / cancel / purge per job and
// "use" per avatar. Cells are filled with textContent only: API data is never parsed as HTML.
(function (P) {
  "use strict";

  const LIMIT = 10;

  function cell(row, text) {
    const td = row.insertCell();
    td.textContent = text;
    return td;
  }

  function button(td, label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    td.append(b);
  }

  class Lists {
    // actions: {openJob(jobId), cancelJob(jobId, purge), useAvatar(avatar), status(text)}
    constructor(actions) {
      this.actions = actions;
    }

    async refresh(api) {
      try {
        const [jobs, avatars] = await Promise.all([
          api.get(`/v1/jobs?limit=${LIMIT}`),
          api.get(`/v1/avatars?limit=${LIMIT}`),
        ]);
        this.renderJobs(jobs.jobs);
        this.renderAvatars(avatars.avatars);
        this.actions.status("");
      } catch (error) {
        this.actions.status(`listing failed: ${error.code}: ${error.message}`);
      }
    }

    renderJobs(jobs) {
      const body = document.querySelector("#jobs-table tbody");
      body.replaceChildren();
      for (const job of jobs) {
        const row = body.insertRow();
        row.dataset.jobId = job.job_id;
        cell(row, job.job_id);
        cell(row, job.status).dataset.status = job.status;
        cell(row, job.lane);
        cell(row, new Date(job.created_at).toLocaleString());
        cell(row, `${Math.round((job.progress || 0) * 100)} %`);
        const actions = cell(row, "");
        button(actions, "Open", () => this.actions.openJob(job.job_id));
        button(actions, "Cancel", () => this.actions.cancelJob(job.job_id, false));
        button(actions, "Purge", () => this.actions.cancelJob(job.job_id, true));
      }
    }

    renderAvatars(avatars) {
      const body = document.querySelector("#avatars-table tbody");
      body.replaceChildren();
      for (const avatar of avatars) {
        const row = body.insertRow();
        row.dataset.avatarId = avatar.avatar_id;
        cell(row, avatar.avatar_id);
        cell(row, avatar.kind);
        cell(row, Object.entries(avatar.options).map(([k, v]) => `${k}=${v}`).join(" "));
        cell(row, new Date(avatar.created_at).toLocaleString());
        button(cell(row, ""), "Use", () => this.actions.useAvatar(avatar));
      }
    }
  }

  P.Lists = Lists;
})(window.Playground = window.Playground || {});
