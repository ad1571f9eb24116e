// The traces page: recent requests with the question, the experiences
// injected, the answer and its grade; grading and correcting an answer
// here is feedback like any other (POST /v1/feedback).
"use strict";

(() => {
  const { api, el, status, fmtNum, fmtTime } = dso;
  let next = "";
  let listFailed = false; // the status line says so, until a listing works

  async function grade(t, g, card) {
    const body = { trace_id: t.id, grade: g };
    const corr = card.querySelector(".correction").value.trim();
    if (corr) body.correction = corr;
    const voter = document.getElementById("voter").value.trim();
    try {
      const r = await api("POST", "/v1/feedback", body, voter ? { "X-DSO-Voter": voter } : undefined);
      status("Recorded grade " + r.grade + " as " + r.voter + " for " + t.id, "ok");
      card.querySelector(".trace-grade").textContent = "graded " + r.grade + " just now (" + r.voter + ")";
    } catch (e) {
      status("Grade refused: " + e.message, "error");
    }
  }

  function card(t) {
    const c = el("article", { class: "card trace", id: "trace-" + t.id, "data-id": t.id });
    // What was injected, by its text (its id on hover); one deleted
    // since has only its id left.
    const injected = t.experiences || t.experience_ids.map((id) => ({ id, text: "" }));
    const exps = injected.length
      ? el("ul", { class: "injected" }, injected.map((x) =>
        el("li", {}, el("a", { href: "/ui/library?id=" + encodeURIComponent(x.id), title: x.id,
          text: x.text || x.id.slice(0, 12) + "… (deleted)" }))))
      : el("p", { class: "muted", text: "no experience injected" });
    c.append(
      el("div", { class: "trace-head" },
        el("span", { class: "small", text: fmtTime(t.created_at) }),
        el("span", { class: "muted small", text: (t.model || "") + (t.domain ? " · " + t.domain : "") + " · " + t.id }),
        el("span", { class: "trace-grade", text: t.grades ? "grade " + fmtNum(t.grade) + " from " + t.grades + " voter" + (t.grades > 1 ? "s" : "") : "not graded" })),
      el("h3", { class: "question", text: t.query || "(no question)" }),
      el("div", { class: "label", text: "Experiences injected" }), exps,
      el("div", { class: "label", text: "Answer" }),
      el("pre", { class: "answer", text: t.answer || "(no answer recorded)" }),
      el("div", { class: "row grade-row" },
        el("button", { class: "good", type: "button", text: "Good answer", onclick: () => grade(t, 1, c) }),
        el("button", { class: "bad danger", type: "button", text: "Bad answer", onclick: () => grade(t, 0, c) }),
        el("input", { class: "correction", placeholder: "the right answer (optional; sent with the grade)", "aria-label": "correction" })));
    return c;
  }

  async function load(more) {
    const q = new URLSearchParams({ limit: "50" });
    if (more && next) q.set("before", next);
    let list;
    try {
      list = await api("GET", "/v1/traces?" + q);
    } catch (e) {
      status("Could not list traces: " + e.message, "error");
      listFailed = true;
      return;
    }
    if (listFailed) {
      listFailed = false;
      status("");
    }
    next = list.next || "";
    const cards = list.data.map(card);
    const box = document.getElementById("trace-list");
    if (more) box.append(...cards);
    else box.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted", text: "No traces yet: they appear as chat requests come in." })]));
    document.getElementById("trace-more").hidden = !list.has_more;
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("content").append(
      el("div", { class: "row card" },
        el("label", { for: "voter" }, el("span", { text: "Vote as" }),
          el("input", { id: "voter", placeholder: "your name (needs an admin key; else your key or address votes)" })),
        el("button", { type: "button", text: "Refresh", onclick: () => load(false) })),
      el("div", { id: "trace-list" }),
      el("button", { id: "trace-more", type: "button", hidden: true, text: "Older", onclick: () => load(true) }));
    load(false);
    document.addEventListener("dso:key", () => load(false));
  });
})();
