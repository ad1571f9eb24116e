// The network page: a placeholder until dso nodes can share experiences.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el } = dso;
  document.getElementById("content").append(
    el("section", { id: "network-placeholder", class: "card" },
      el("h2", { text: "No network yet" }),
      el("p", { text: "This node does not share experiences with other nodes: the network " +
        "(signed records, Merkle logs, peers and trust) is not built yet. When it is, this page " +
        "shows the networks this node has joined, its peers, and what they share." }),
      el("p", { class: "muted", text: "Experiences created here carry this node as their source; " +
        "their network fields are empty." })));
});
