// The API as the dashboard uses it: same origin, the page lives at <prefix>/dashboard/, the API at <prefix>/.

const API_ROOT = new URL("../", window.location.href);

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Calls the API with a key; resolves to the JSON body, rejects with ApiError (the API's own error body). */
export async function call(key, method, path, body) {
  const headers = { Authorization: `Bearer ${key}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, API_ROOT), init);
  } catch (error) {
    throw new ApiError(0, "network_error", `the API did not answer: ${error.message}`);
  }
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error;
    throw new ApiError(
      response.status,
      error ? error.code : `http_${response.status}`,
      error ? error.message : `${method} ${path} answered ${response.status}`,
      error ? error.details : null,
    );
  }
  return payload;
}

export const jobs = {
  list: (key, pageSize) => call(key, "GET", `jobs?page_size=${pageSize}`),
  get: (key, id) => call(key, "GET", `jobs/${encodeURIComponent(id)}`),
  submit: (key, urls) => call(key, "POST", "jobs", { urls }),
  cancel: (key, id) => call(key, "DELETE", `jobs/${encodeURIComponent(id)}`),
  replay: (key, id) => call(key, "POST", `jobs/${encodeURIComponent(id)}/replay`),
  duplicates: (key, id, pageSize) =>
    call(key, "GET", `jobs/${encodeURIComponent(id)}/duplicates?page_size=${pageSize}`),
};

export const operator = {
  overview: (key) => call(key, "GET", "operator/overview"),
};
