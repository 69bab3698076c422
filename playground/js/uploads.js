// Uploads through the API's presigned POSTs: ask for an upload, then POST the file straight to
// the uploads bucket (every presigned field first, the file last). A file already uploaded in
// this page is not sent again when the user fixes another field and resubmits.
(function (P) {
  "use strict";

  const AUDIO_TYPES = {
    "audio/wav": "audio/wav", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav", "audio/mpeg": "audio/mpeg", "audio/mp3": "audio/mpeg",
    "audio/mp4": "audio/mp4", "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4",
  };
  const BY_EXTENSION = {
    wav: "audio/wav", mp3: "audio/mpeg", m4a: "audio/mp4", mp4: "video/mp4",
    mov: "video/quicktime", png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg",
  };
  const uploaded = new WeakMap(); // File -> upload_id

  function contentTypeOf(file) {
    const extension = (file.name.split(".").pop() || "").toLowerCase();
    return AUDIO_TYPES[file.type] || file.type || BY_EXTENSION[extension] || "";
  }

  // "video" or "image" for an avatar file; null when it is neither.
  function avatarKind(file) {
    const type = contentTypeOf(file);
    if (type.startsWith("video/")) return "video";
    if (type.startsWith("image/")) return "image";
    return null;
  }

  async function upload(api, kind, file, onProgress) {
    const cached = uploaded.get(file);
    if (cached) return cached;
    // An unknown type is sent as is: the API names what it accepts.
    const created = await api.post("/v1/uploads", { kind, content_type: contentTypeOf(file) });
    const form = new FormData();
    for (const [name, value] of Object.entries(created.upload.fields)) form.append(name, value);
    form.append("file", file);
    onProgress(`uploading ${file.name} (${file.size} bytes) to the uploads bucket`);
    let response;
    try {
      response = await fetch(created.upload.url, { method: "POST", body: form });
    } catch (error) {
      throw new P.ApiError(0, "UPLOAD_FAILED", `the uploads bucket did not answer this page ` +
        `(its CORS rules must allow ${location.origin}): ${error.message}`);
    }
    if (!response.ok) {
      const text = await response.text();
      const message = (/<Message>([^<]*)<\/Message>/.exec(text) || [])[1] || response.statusText;
      throw new P.ApiError(response.status, "UPLOAD_FAILED", `the uploads bucket refused ` +
        `${file.name}: ${message}`);
    }
    uploaded.set(file, created.upload_id);
    return created.upload_id;
  }

  P.avatarKind = avatarKind;
  P.upload = upload;
})(window.Playground = window.Playground || {});
