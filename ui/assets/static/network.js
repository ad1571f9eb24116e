// The network page: the networks this node has joined (GET /v1/network),
// the logs it follows, what it admitted, quarantined and refused, and any
// evidence that a peer showed two histories.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { api, el, status, fmtTime } = dso;
  const content = document.getElementById("content");

  // counts renders {reason: n} as "reason n, reason n", or "—".
  function counts(m) {
    const parts = Object.entries(m || {}).filter(([, n]) => n > 0).sort().map(([k, n]) => k + " " + n);
    return parts.length ? parts.join(", ") : "—";
  }

  function logRow(l) {
    return el("tr", { class: "log-row", "data-state": l.state },
      el("td", {}, el("div", { text: l.author }), el("div", { class: "muted mono", text: l.url })),
      el("td", { class: "trust", text: l.trusted
        ? "trusted, weight " + Number(l.weight).toFixed(2) + (l.depth > 1 ? " (vouched, depth " + l.depth + ")" : "")
        : "quarantined" }),
      el("td", { class: "state state-" + l.state, text: l.state }),
      el("td", { class: "num", text: l.size }),
      el("td", { class: "num", text: l.lag }),
      el("td", { class: "records", text: counts(l.records) }),
      el("td", { class: "rejected", text: counts(l.rejected) + (l.fetch_errors ? ", fetch errors " + l.fetch_errors : "") }),
      el("td", { text: l.last_sync ? fmtTime(l.last_sync) : "never" }),
      el("td", { class: "num", text: l.bytes_fetched }));
  }

  function forks(logs) {
    const forked = logs.filter((l) => l.fork);
    if (!forked.length) return null;
    return el("section", { class: "card fork" },
      el("h3", { text: "Evidence of forks" }),
      el("p", { text: "These logs showed two histories that cannot both be true; this node stopped taking them. Both signed checkpoints are kept." }),
      forked.map((l) => el("div", {},
        el("h4", { text: l.author + " — " + l.url }),
        el("pre", { class: "mono", text: "accepted:\n" + l.fork.old }),
        el("pre", { class: "mono", text: "then shown:\n" + l.fork.new }))));
  }

  function quarantine(n) {
    const rows = (n.quarantine || []).map((q) => el("tr", { class: "quarantine-row" },
      el("td", { text: q.author }), el("td", { text: q.domain || "—" }),
      el("td", { class: "text", text: q.text }),
      el("td", { class: "num", text: Number(q.confidence).toFixed(2) }),
      el("td", { text: fmtTime(q.time) })));
    return el("section", { class: "card" },
      el("h3", { text: "Quarantine (" + n.quarantined + ")" }),
      el("p", { class: "muted", text: "Records from logs without standing: stored and shown here, never injected." }),
      rows.length ? el("table", {},
        el("thead", {}, el("tr", {}, ["Author", "Domain", "Text", "Confidence", "Time"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)) : el("p", { text: "Nothing quarantined." }));
  }

  function network(n) {
    const logs = n.logs || [];
    return el("section", { class: "network", "data-id": n.id },
      el("section", { class: "card" },
        el("h2", { text: "Network " + n.id }),
        el("dl", { class: "facts" },
          el("dt", { text: "This node's log" }), el("dd", { class: "mono", text: n.origin + " — " + n.size + " records" }),
          el("dt", { text: "Verifier key" }), el("dd", { class: "mono", text: n.verifier_key }),
          el("dt", { text: "Shared domains" }), el("dd", { text: (n.share || []).length ? n.share.join(", ") : "none (nothing is published)" }),
          el("dt", { text: "Retired by votes" }), el("dd", { class: "retired", text: String(n.retired_by_votes || 0) }),
          el("dt", { text: "Vouched keys without standing" }), el("dd", { class: "unvouched", text: String(n.vouched_without_standing || 0) + " (not followed; their votes weigh nothing)" }))),
      el("section", { class: "card" },
        el("h3", { text: "Followed logs (" + logs.length + ")" }),
        logs.length ? el("table", { id: "logs" },
          el("thead", {}, el("tr", {}, ["Log", "Trust", "State", "Size", "Lag", "Records", "Refused", "Last sync", "Bytes fetched"].map((h) => el("th", { text: h })))),
          el("tbody", {}, logs.map(logRow))) : el("p", { text: "This node follows no logs (network.peers in the config)." })),
      forks(logs),
      quarantine(n));
  }

  async function load() {
    try {
      const st = await api("GET", "/v1/network");
      content.replaceChildren(...(st.networks || []).map(network));
      status("");
    } catch (e) {
      if (e.status === 404) {
        content.replaceChildren(el("section", { id: "network-none", class: "card" },
          el("h2", { text: "No network configured" }),
          el("p", { text: "This node shares no experiences. A network: section in the config (id, key_file from dso keygen, share, peers) publishes this node's log and follows its peers'; this page then shows them." })));
        status("");
        return;
      }
      status("Could not load the network: " + e.message, "error");
    }
  }

  document.addEventListener("dso:key", load);
  load();
});
