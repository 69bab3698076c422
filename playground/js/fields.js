// The job form's fields: read into the request bodies the API takes, and show the API's own
// validation errors next to the field at fault. Values are sent as typed (no client-side ranges),
// so the messages are the API's: "2.5" for an integer goes as 2.5 and the API says why not.
(function (P) {
  "use strict";

  const INTEGER = /^-?\d+$/;
  const NUMBER = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

  function valueOf(input) {
    if (input.type === "checkbox") return input.checked;
    const text = input.value.trim();
    if (text === "") return undefined; // absent: the API's default applies
    const kind = input.dataset.kind;
    if (kind === "integer" && INTEGER.test(text)) return Number(text);
    if ((kind === "integer" || kind === "number") && NUMBER.test(text)) return Number(text);
    return text;
  }

  // {avatar_options: {...}, lane, options: {...}, cancel_after, webhook_url} from [data-field].
  function readFields(form) {
    const values = {};
    for (const input of form.querySelectorAll("[data-field]")) {
      const value = valueOf(input);
      if (value === undefined) continue;
      const path = input.dataset.field.split(".");
      let target = values;
      for (const part of path.slice(0, -1)) target = target[part] = target[part] || {};
      target[path[path.length - 1]] = value;
    }
    return values;
  }

  // Where a field named by one route's request appears on the form.
  const ALIASES = {
    uploads: { kind: null, content_type: null },
    avatars: { upload_id: "avatar", options: "avatar_options" },
    jobs: { avatar_id: "avatar", avatar_upload_id: "avatar", audio_upload_id: "audio" },
  };

  function formField(route, field, fallback) {
    if (!field) return fallback;
    const [head, ...rest] = field.split(".");
    const aliases = ALIASES[route] || {};
    if (!(head in aliases)) return field;
    if (aliases[head] === null) return fallback;
    return [aliases[head], ...rest].join(".");
  }

  function clearErrors(form) {
    for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  // Puts `message` under the form's field `field`; returns false when the form has no such field.
  function showFieldError(form, field, message) {
    const slot = field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (!slot) return false;
    slot.textContent = message;
    const input = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    return true;
  }

  P.readFields = readFields;
  P.formField = formField;
  P.clearErrors = clearErrors;
  P.showFieldError = showFieldError;
})(window.Playground = window.Playground || {});
