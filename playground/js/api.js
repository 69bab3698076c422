// The job API client: every call sends the key in x-api-key to the URL the user entered, and every
// failure becomes an ApiError carrying the API's own {code, message, field}.
(function (P) {
  "use strict";

  class ApiError extends Error {
    constructor(status, code, message, field, retryAfter) {
      super(message);
      this.status = status; // HTTP status; 0 when no answer could be read (network, CORS)
      this.code = code;
      this.field = field || null; // dotted path into the body, a query parameter or a header
      this.retryAfter = retryAfter; // seconds, when the API says when to retry
    }
  }

  class ApiClient {
    constructor(baseUrl, apiKey) {
      this.baseUrl = baseUrl.replace(/\/+$/, "");
      this.apiKey = apiKey;
    }

    async request(method, path, { body, headers } = {}) {
      const init = { method, headers: { "x-api-key": this.apiKey, ...headers }, cache: "no-store" };
      if (body !== undefined) {
        init.headers["content-type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let response;
      try {
        response = await fetch(this.baseUrl + path, init);
      } catch (error) {
        throw new ApiError(0, "NETWORK", `could not reach ${this.baseUrl} (is the URL right, and ` +
          `does the API allow this page's origin, ${location.origin}?): ${error.message}`);
      }
      const text = await response.text();
      let document = null;
      try {
        document = text ? JSON.parse(text) : null;
      } catch (_) {
        document = null;
      }
      if (!response.ok) {
        const error = (document && document.error) || {};
        const message = error.message || (document && document.message) || text || response.statusText;
        throw new ApiError(response.status, error.code || `HTTP_${response.status}`, message,
          error.field, Number(response.headers.get("Retry-After")) || undefined);
      }
      return document;
    }

    get(path) { return this.request("GET", path); }
    post(path, body, headers) { return this.request("POST", path, { body, headers }); }
    delete(path) { return this.request("DELETE", path); }
  }

  // A fresh Idempotency-Key; getRandomValues works on http:, https: and file: pages alike.
  function newIdempotencyKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return "playground-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  P.ApiError = ApiError;
  P.ApiClient = ApiClient;
  P.newIdempotencyKey = newIdempotencyKey;
})(window.Playground = window.Playground || {});
