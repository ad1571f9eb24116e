// dso dashboard: helpers shared by every page. Everything the API returns
// is untrusted and goes into the page as text (textContent), never as HTML.
"use strict";

const dso = (() => {
  const keyName = "dso.adminKey";

  function key() { return sessionStorage.getItem(keyName) || ""; }

  // el builds an element: attrs are set as attributes (or as properties
  // for the few listed), children are nodes or strings (added as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "value") e.value = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // APIError carries the API's {"error":{...}} message and status.
  class APIError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }

  // api calls the JSON API with the session's key, if any.
  async function api(method, path, body, headers) {
    const h = Object.assign({ "Accept": "application/json" }, headers || {});
    if (key()) h["Authorization"] = "Bearer " + key();
    const init = { method, headers: h, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      h["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const msg = typeof err === "string" ? err : (err.message || resp.statusText);
      if (resp.status === 401) {
        showKeyInput(true);
        showKeyState("the server asks for an admin key");
      }
      throw new APIError(resp.status, msg, err.code);
    }
    return data;
  }

  function status(msg, kind) {
    const s = document.getElementById("status");
    s.textContent = msg || "";
    s.className = "status" + (kind ? " " + kind : "");
  }

  function showKeyState(extra) {
    const st = document.getElementById("key-state");
    st.textContent = (key() ? "key set for this session" : "no key") + (extra ? ": " + extra : "");
  }

  // showKeyInput shows or hides the key box (its state line stays).
  function showKeyInput(on) {
    for (const id of ["key-input", "key-save", "key-forget"]) document.getElementById(id).hidden = !on;
    document.querySelector('label[for="key-input"]').hidden = !on;
  }

  // probeOpen hides the key box where the API answers without a key (dso
  // on loopback, or an open library): there it would only puzzle.
  async function probeOpen() {
    if (key()) return;
    try {
      const r = await fetch("/v1/stats?window=10", { credentials: "omit", cache: "no-store" });
      if (r.ok) {
        showKeyInput(false);
        document.getElementById("key-state").textContent = "no key needed here";
      }
    } catch (_) { /* the pages say what fails */ }
  }

  function fmtTime(s) {
    const d = new Date(s);
    return isNaN(d) ? "" : d.toLocaleString();
  }

  function fmtNum(x, digits) {
    if (x === undefined || x === null || isNaN(x)) return "—";
    return Number(x).toFixed(digits === undefined ? 2 : digits);
  }

  function setupKey() {
    const form = document.getElementById("key-form");
    const input = document.getElementById("key-input");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input.value) sessionStorage.setItem(keyName, input.value.trim());
      input.value = "";
      showKeyState();
      document.dispatchEvent(new Event("dso:key"));
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(keyName);
      showKeyState();
      document.dispatchEvent(new Event("dso:key"));
    });
    showKeyState();
    probeOpen();
  }

  document.addEventListener("DOMContentLoaded", setupKey);

  return { api, el, status, fmtTime, fmtNum, APIError };
})();
