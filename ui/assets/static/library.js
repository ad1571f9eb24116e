// The library page: experiences listed and filtered, what retrieval would
// inject for a question, and adding, retiring and deleting experiences.
"use strict";

(() => {
  const { api, el, status, fmtNum, fmtTime } = dso;
  let next = "";
  let listFailed = false; // the status line says so, until a listing works

  function source(e) { return e.trace_id ? "learned" : "added"; }

  function row(e) {
    const retire = el("button", {
      class: "retire", type: "button", "data-id": e.id,
      text: e.status === "retired" ? "Reactivate" : "Retire",
      onclick: () => act(() => api("PATCH", "/v1/experiences/" + encodeURIComponent(e.id),
        { status: e.status === "retired" ? "active" : "retired" }), e.status === "retired" ? "Reactivated" : "Retired",
        e.status === "retired" ? "Reactivate" : "Retire"),
    });
    const del = el("button", { class: "delete danger", type: "button", "data-id": e.id, text: "Delete" });
    del.addEventListener("click", () => {
      // The first click arms the button, the second deletes: no dialog.
      if (!del.classList.contains("armed")) {
        del.classList.add("armed");
        del.textContent = "Really delete?";
        return;
      }
      act(() => api("DELETE", "/v1/experiences/" + encodeURIComponent(e.id)), "Deleted", "Delete");
    });
    const votes = e.votes ? e.votes.up + " up / " + e.votes.down + " down" : "—";
    return el("tr", { id: "exp-" + e.id, class: "exp " + e.status, "data-id": e.id },
      el("td", { class: "text" }, el("div", { class: "exp-text", text: e.text }), el("div", { class: "muted small exp-id", title: e.id, text: e.id.slice(0, 16) + "…" })),
      el("td", { text: e.domain || "—" }),
      el("td", { class: "exp-status", text: e.status }),
      el("td", { class: "num", text: fmtNum(e.confidence) }),
      el("td", { class: "num", text: votes }),
      el("td", { class: "num", text: e.approval === undefined ? "—" : fmtNum(e.approval * 100, 0) + "%" }),
      el("td", { text: source(e) + (e.source_model ? " (" + e.source_model + ")" : "") }),
      el("td", { text: e.source_node || "—" }),
      el("td", { class: "muted", text: e.network || "—" }),
      el("td", { class: "small", text: fmtTime(e.created_at) }),
      el("td", { class: "actions" }, retire, del));
  }

  // table scrolls sideways inside its card when the window is too narrow
  // for it, rather than run past the card's edge.
  function table(rows) {
    return el("div", { class: "table-wrap" }, el("table", { class: "list", id: "exp-table" },
      el("thead", {}, el("tr", {}, ["Text", "Domain", "Status", "Confidence", "Votes", "Approval", "Source", "Node", "Network", "Created", ""].map((h) => el("th", { text: h })))),
      el("tbody", { id: "exp-rows" }, rows)));
  }

  async function act(f, done, what) {
    try {
      await f();
      status(done, "ok");
      load(false);
    } catch (e) {
      status(what + " refused: " + e.message, "error");
    }
  }

  function filters() {
    return {
      domain: document.getElementById("f-domain").value.trim(),
      status: document.getElementById("f-status").value,
      source: document.getElementById("f-source").value,
      node: document.getElementById("f-node").value.trim(),
    };
  }

  async function load(more) {
    const f = filters();
    const q = new URLSearchParams({ include: "votes", limit: "100" });
    if (f.domain) q.set("domain", f.domain);
    if (f.status) q.set("status", f.status);
    if (more && next) q.set("after", next);
    const only = new URLSearchParams(location.search).get("id");
    let list;
    try {
      list = only && !more
        ? { data: [await api("GET", "/v1/experiences/" + encodeURIComponent(only) + "?include=votes")], has_more: false }
        : await api("GET", "/v1/experiences?" + q);
    } catch (e) {
      status("Could not list experiences: " + e.message, "error");
      listFailed = true;
      return;
    }
    if (listFailed) {
      listFailed = false;
      status("");
    }
    // Source and node are filtered here, on the page fetched.
    const rows = list.data.filter((e) => (!f.source || source(e) === f.source) &&
      (!f.node || (e.source_node || "").includes(f.node))).map(row);
    next = list.next || "";
    const body = document.getElementById("exp-rows");
    if (more && body) body.append(...rows);
    else document.getElementById("exp-list").replaceChildren(
      only ? el("p", {}, "Showing one experience. ", el("a", { href: "/ui/library", text: "Show all" })) : "",
      table(rows));
    document.getElementById("exp-more").hidden = !list.has_more;
  }

  async function add(ev) {
    ev.preventDefault();
    const text = document.getElementById("add-text").value;
    const domain = document.getElementById("add-domain").value.trim();
    const conf = parseFloat(document.getElementById("add-confidence").value);
    try {
      const e = await api("POST", "/v1/experiences", { text, domain, confidence: isNaN(conf) ? 0.5 : conf });
      document.getElementById("add-text").value = "";
      status("Added " + e.id, "ok");
      load(false);
    } catch (e) {
      status("Add refused: " + e.message, "error");
    }
  }

  async function search(ev) {
    ev.preventDefault();
    const q = new URLSearchParams({ q: document.getElementById("s-q").value });
    const d = document.getElementById("s-domain").value.trim();
    if (d) q.set("domain", d);
    const out = document.getElementById("search-results");
    try {
      const r = await api("GET", "/v1/experiences/search?" + q);
      const gate = r.gate === undefined ? "no gate (index empty)" : "gate " + fmtNum(r.gate, 3);
      const cal = r.calibration ? " · calibrated relevance " + fmtNum(r.calibration.value, 3) : "";
      const injected = r.data.filter((e) => e.injected).length;
      out.replaceChildren(
        el("p", { id: "search-gate", text: gate + cal + " · " + injected + " of " + r.data.length + " would be injected" }),
        el("table", { class: "list" },
          el("thead", {}, el("tr", {}, ["Injected", "Score", "Relevance", "Text", "Domain", "Confidence"].map((h) => el("th", { text: h })))),
          el("tbody", {}, r.data.map((e) => el("tr", { class: e.injected ? "pass" : "fail" },
            el("td", { text: e.injected ? "yes" : "no" }),
            el("td", { class: "num", text: fmtNum(e.score, 3) }),
            el("td", { class: "num", text: fmtNum(e.relevance, 3) }),
            el("td", {}, el("a", { href: "/ui/library?id=" + encodeURIComponent(e.id), text: e.text })),
            el("td", { text: e.domain || "—" }),
            el("td", { class: "num", text: fmtNum(e.confidence) }))))));
    } catch (e) {
      out.replaceChildren(el("p", { class: "error", text: "Search failed: " + e.message }));
    }
  }

  function field(id, label, input) {
    return el("label", { for: id }, el("span", { text: label }), input);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const status_ = el("select", { id: "f-status" }, el("option", { value: "", text: "any status" }),
      el("option", { value: "active", text: "active" }), el("option", { value: "retired", text: "retired" }));
    const source_ = el("select", { id: "f-source" }, el("option", { value: "", text: "any source" }),
      el("option", { value: "added", text: "added by hand" }), el("option", { value: "learned", text: "learned from feedback" }));
    document.getElementById("content").append(
      el("section", { class: "card" }, el("h2", { text: "What would be injected?" }),
        el("form", { id: "search-form", class: "row", onsubmit: search },
          field("s-q", "Question", el("input", { id: "s-q", type: "search", required: true, placeholder: "a question a user might ask" })),
          field("s-domain", "Domain", el("input", { id: "s-domain", placeholder: "any" })),
          el("button", { type: "submit", text: "Search" })),
        el("div", { id: "search-results" })),
      el("section", { class: "card" }, el("h2", { text: "Add an experience" }),
        el("form", { id: "add-form", onsubmit: add },
          field("add-text", "Text", el("textarea", { id: "add-text", rows: 3, required: true, maxlength: 16384 })),
          el("div", { class: "row" },
            field("add-domain", "Domain", el("input", { id: "add-domain", placeholder: "e.g. code/go" })),
            field("add-confidence", "Confidence", el("input", { id: "add-confidence", type: "number", min: 0, max: 1, step: 0.05, value: "0.5" })),
            el("button", { id: "add-submit", type: "submit", text: "Add" })))),
      el("section", { class: "card" }, el("h2", { text: "Experiences" }),
        el("form", { id: "filter-form", class: "row", onsubmit: (ev) => { ev.preventDefault(); load(false); } },
          field("f-domain", "Domain", el("input", { id: "f-domain", placeholder: "prefix" })),
          field("f-status", "Status", status_),
          field("f-source", "Source", source_),
          field("f-node", "Node", el("input", { id: "f-node", placeholder: "any" })),
          el("button", { type: "submit", text: "Filter" })),
        el("div", { id: "exp-list" }),
        el("button", { id: "exp-more", type: "button", hidden: true, text: "More", onclick: () => load(true) })));
    load(false);
    document.addEventListener("dso:key", () => load(false));
  });
})();
