// Wires the page: the API connection (URL and key typed by the user, kept in this tab's
// sessionStorage only), the job form's steps (upload, register the avatar, submit), the job view
// and the lists. A key in the URL's fragment (#key=..., as local mode prints it) is read once and
// removed from the address bar; fragments never reach a server.
(function (P) {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const STORE = { url: "musetalk.apiUrl", key: "musetalk.apiKey" };
  const RETRIES = 3; // 503 and IDEMPOTENCY_IN_PROGRESS answers: retry with the same key
  let api = null;

  const jobView = new P.JobView(() => lists.refresh(api));
  const lists = new P.Lists({
    openJob: (jobId) => jobView.track(api, jobId, null, null),
    cancelJob: cancelFromList,
    useAvatar: (avatar) => {
      $("avatar-id").value = avatar.avatar_id;
      $("avatar-file").value = "";
    },
    status: (text) => { $("lists-status").textContent = text; },
  });

  function restoreConnection() {
    if (location.protocol === "file:") {
      // A file's origin is "null", which no stack allows (every sandboxed frame shares it).
      $("connection-status").textContent = "serve this page over http(s) (docs/playground.md): " +
        "opened from a file, the browser sends Origin: null, which the API does not allow";
      return;
    }
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.has("key")) {
      sessionStorage.setItem(STORE.key, fragment.get("key"));
      sessionStorage.setItem(STORE.url, location.origin); // local mode serves page and API
      history.replaceState(null, "", location.pathname + location.search);
    }
    $("api-url").value = sessionStorage.getItem(STORE.url) || "";
    $("api-key").value = sessionStorage.getItem(STORE.key) || "";
    if ($("api-url").value && $("api-key").value) connect();
  }

  async function connect(event) {
    if (event) event.preventDefault();
    const url = $("api-url").value.trim();
    const key = $("api-key").value.trim();
    if (!url || !key) {
      $("connection-status").textContent = "enter the API URL and your API key";
      return;
    }
    sessionStorage.setItem(STORE.url, url);
    sessionStorage.setItem(STORE.key, key);
    api = new P.ApiClient(url, key);
    try {
      await api.get("/v1/jobs?limit=1");
      $("connection-status").textContent = "connected";
      $("connection-status").dataset.state = "connected";
      await refreshLists();
    } catch (error) {
      $("connection-status").textContent = `${error.code}: ${error.message}`;
      $("connection-status").dataset.state = "failed";
    }
  }

  async function refreshLists() {
    await lists.refresh(api);
    const select = $("avatar-id");
    const chosen = select.value;
    const rows = document.querySelectorAll("#avatars-table tbody tr");
    select.replaceChildren(new Option("(upload the file above)", ""));
    for (const row of rows) select.add(new Option(row.dataset.avatarId, row.dataset.avatarId));
    select.value = chosen;
  }

  // One step of the submission; an ApiError is shown at the form field the route's `field` names.
  async function step(route, fallbackField, text, work) {
    $("form-status").textContent = text;
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof P.ApiError)) throw error;
      const field = P.formField(route, error.field, fallbackField);
      P.showFieldError($("job-form"), field, error.message);
      error.shown = true;
      throw error;
    }
  }

  async function submitJob(api, body, key) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await api.post("/v1/jobs", body, { "Idempotency-Key": key });
      } catch (error) {
        const retryable = error.status === 503 || error.code === "IDEMPOTENCY_IN_PROGRESS";
        if (!retryable || attempt >= RETRIES) throw error;
        await new Promise((r) => setTimeout(r, 1000 * (error.retryAfter || attempt)));
      }
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    const form = $("job-form");
    P.clearErrors(form);
    if (!api) {
      $("form-status").textContent = "connect to the API first";
      return;
    }
    const avatarFile = $("avatar-file").files[0];
    const audioFile = $("audio-file").files[0];
    const problems = [];
    if (!avatarFile && !$("avatar-id").value) problems.push(["avatar", "choose or drop a face video or image, or pick a registered avatar"]);
    if (avatarFile && !P.avatarKind(avatarFile)) problems.push(["avatar", "an avatar is a video (mp4, mov) or an image (png, jpeg)"]);
    if (!audioFile) problems.push(["audio", "choose or drop a speech file"]);
    if (problems.length) {
      for (const [field, message] of problems) P.showFieldError(form, field, message);
      $("form-status").textContent = "";
      return;
    }
    const fields = P.readFields(form);
    $("submit").disabled = true;
    try {
      let avatarId = $("avatar-id").value;
      if (avatarFile) {
        const uploadId = await step("uploads", "avatar", "uploading the avatar", () =>
          P.upload(api, P.avatarKind(avatarFile), avatarFile, (t) => { $("form-status").textContent = t; }));
        const avatar = await step("avatars", "avatar", "registering the avatar", () =>
          api.post("/v1/avatars", { upload_id: uploadId, options: fields.avatar_options || {} }));
        avatarId = avatar.avatar_id;
      }
      const audioId = await step("uploads", "audio", "uploading the speech", () =>
        P.upload(api, "audio", audioFile, (t) => { $("form-status").textContent = t; }));
      const body = { avatar_id: avatarId, audio_upload_id: audioId, lane: fields.lane };
      for (const name of ["options", "cancel_after", "webhook_url"]) {
        if (fields[name] !== undefined) body[name] = fields[name];
      }
      const key = P.newIdempotencyKey();
      const accepted = await step("jobs", null, "submitting the job", () => submitJob(api, body, key));
      $("form-status").textContent = `accepted: ${accepted.job_id}`;
      jobView.track(api, accepted.job_id, accepted, key);
      await refreshLists();
    } catch (error) {
      $("form-status").textContent = error instanceof P.ApiError
        ? `${error.code}: ${error.message}` : `unexpected: ${error.message}`;
    } finally {
      $("submit").disabled = false;
    }
  }

  async function cancelFromList(jobId, purge) {
    if (purge && !confirm(`Cancel ${jobId} and erase its media now?`)) return;
    try {
      await api.delete(`/v1/jobs/${encodeURIComponent(jobId)}${purge ? "?purge=true" : ""}`);
    } catch (error) {
      $("lists-status").textContent = `${error.code}: ${error.message}`;
    }
    if (jobView.jobId === jobId) jobView.track(api, jobId, null, null);
    await refreshLists();
  }

  function dropZones() {
    for (const zone of document.querySelectorAll("[data-drop-for]")) {
      const input = $(zone.dataset.dropFor);
      zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
      zone.addEventListener("dragleave", () => zone.classList.remove("over"));
      zone.addEventListener("drop", (e) => {
        e.preventDefault();
        zone.classList.remove("over");
        if (e.dataTransfer.files.length) input.files = e.dataTransfer.files;
      });
    }
    $("avatar-file").addEventListener("change", () => { $("avatar-id").value = ""; });
  }

  $("connection-form").addEventListener("submit", connect);
  $("job-form").addEventListener("submit", onSubmit);
  $("refresh").addEventListener("click", () => api && refreshLists());
  dropZones();
  restoreConnection();
})(window.Playground = window.Playground || {});
