// The TimeCoin explorer page: one view per hash route (#/block/…, #/tx/…), each built from
// one request to the node's explorer API, and kept current by the node's server-sent events.
// Plain JavaScript, no framework, no build step. Text from the chain is only ever set as
// text (never as HTML).
"use strict";

const ATOMS_PER_TIME = 100000000;
const RECENT_BLOCKS = 10;
const RECENT_FINALS = 20;
const SHOWN_TXS = 500;

// ---- small helpers ----------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

// el("td", {class: "num"}, "text", childNode, ...): an element with attributes and children.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces what `node` shows; children may be nested lists, and null or false are skipped.
function show(node, ...children) {
  node.replaceChildren(...children.flat(Infinity)
    .filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

function link(route, text, title) {
  return el("a", { href: "#/" + route, title: title }, text);
}

function short(hex) {
  if (typeof hex !== "string" || hex.length <= 20) return hex || "";
  return hex.slice(0, 10) + "…" + hex.slice(-6);
}

const blockLink = (hash, text) => link("block/" + hash, text === undefined ? short(hash) : text, hash);
const txLink = (txid) => el("span", { class: "mono" }, link("tx/" + txid, short(txid), txid));
const addressLink = (address) => el("span", { class: "mono" }, link("address/" + address, address));

function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

// An integer number of atoms as TIME with eight decimals, exactly.
function atoms(n) {
  const negative = n < 0;
  const abs = Math.abs(Math.round(n));
  const whole = Math.floor(abs / ATOMS_PER_TIME);
  const frac = String(abs % ATOMS_PER_TIME).padStart(8, "0");
  return (negative ? "−" : "") + whole.toLocaleString("en-US") + "." + frac + " TIME";
}

// A decimal amount as the RPC prints it (TIME) shown like `atoms`.
const coins = (value) => atoms(Math.round(Number(value) * ATOMS_PER_TIME));

function table(headers, rows, attrs) {
  const head = el("tr", null, headers.map((h) =>
    el("th", { class: h.endsWith("#") ? "num" : null }, h.replace(/#$/, ""))));
  return el("table", attrs, el("thead", null, head), el("tbody", null, rows));
}

function fields(pairs) {
  return el("dl", { class: "fields" },
    pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== "")
      .map(([k, v]) => [el("dt", null, k), el("dd", null, v)]));
}

function card(label, value, id) {
  return el("div", { class: "card" },
    el("div", { class: "label" }, label), el("div", { class: "value", id: id }, value));
}

// fn runs at most once every `ms`; a call in between is folded into one run at the end.
function throttled(fn, ms) {
  let last = 0;
  let timer = null;
  return function run() {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => { timer = null; run(); }, wait);
    }
  };
}

async function api(view, params) {
  const query = new URLSearchParams(params || {}).toString();
  const response = await fetch("api/" + view + (query ? "?" + query : ""));
  let body;
  try {
    body = await response.json();
  } catch (e) {
    body = { error: "unreadable answer (HTTP " + response.status + ")" };
  }
  if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
  return body;
}

// ---- views ------------------------------------------------------------------------------
// Each view fills `main` and returns what it wants to hear from the live feed:
// { block(event), final(event) }, any of them optional. A resync re-renders the view.

function commitCell(commit) {
  if (!commit) return el("span", { class: "muted" }, "none stored");
  return commit.signers + " signers, weight " + commit.weight + " / quorum " + commit.quorum;
}

function blockRow(b, fresh) {
  return el("tr", { class: fresh ? "fresh" : null, "data-height": b.height },
    el("td", { class: "num" }, blockLink(b.hash, b.height)),
    el("td", { class: "mono" }, blockLink(b.hash)),
    el("td", null, time(b.time_ms)),
    el("td", { class: "mono", title: b.proposer }, short(b.proposer)),
    el("td", { class: "num" }, b.round),
    el("td", { class: "num" }, b.nTx),
    el("td", null, commitCell(b.commit)));
}

async function homeView(main) {
  const [summary, recent] = await Promise.all([api("summary"), api("blocks", { count: RECENT_BLOCKS })]);
  const c = summary.consensus;
  const blocksBody = el("tbody", { id: "blocks" }, recent.blocks.map((b) => blockRow(b)));
  const finals = el("tbody", { id: "finals" });
  const waiting = el("p", { class: "muted", id: "finals-waiting" }, "Waiting for finalized transactions…");
  show(main, 
    el("div", { class: "cards" },
      card("Height", summary.height, "summary-height"),
      card("Round / step", c.round + " / " + c.step),
      card("Proposer", short(c.proposer || "")),
      card("Masternodes", c.masternodes + " (quorum weight " + c.quorum_weight + " of " + c.total_weight + ")"),
      card("Connected masternodes", c.connected_masternodes),
      card("Pool", summary.pool.size + " transactions")),
    el("h2", null, "Recent blocks"),
    el("table", null,
      el("thead", null, el("tr", null, ["Height", "Hash", "Time", "Proposer", "Round", "Txs", "Commit certificate"]
        .map((h) => el("th", null, h)))),
      blocksBody),
    el("h2", null, "Finalized transactions (live)"),
    waiting,
    el("table", null, el("thead", null, el("tr", null, el("th", null, "Txid"), el("th", null, "Final at"))), finals));
  // New blocks are fetched alone (not the whole list again) and put on top.
  let seenTip = recent.tip;
  const topShown = () => Number(blocksBody.firstChild ? blocksBody.firstChild.dataset.height : -1);
  const addBlocks = throttled(async () => {
    const count = Math.min(RECENT_BLOCKS, seenTip - topShown());
    if (count <= 0) return;
    let latest;
    try {
      latest = await api("blocks", { count: count, top: seenTip });
    } catch (e) {
      return; // the next block tries again
    }
    const fresh = latest.blocks.filter((b) => b.height > topShown());
    blocksBody.prepend(...fresh.map((b) => blockRow(b, true)));
    while (blocksBody.children.length > RECENT_BLOCKS) blocksBody.lastChild.remove();
    const height = $("#summary-height");
    if (height) height.textContent = topShown();
  }, 1000);
  return {
    block(event) {
      seenTip = Math.max(seenTip, event.height);
      addBlocks();
    },
    final(event) {
      waiting.hidden = true;
      finals.prepend(el("tr", { class: "fresh", "data-txid": event.txid },
        el("td", null, txLink(event.txid)), el("td", null, time(Date.now()))));
      while (finals.children.length > RECENT_FINALS) finals.lastChild.remove();
    },
  };
}

function txRows(txs) {
  return txs.slice(0, SHOWN_TXS).map((tx) => {
    const out = (tx.vout || []).reduce((sum, o) => sum + Math.round(o.value * ATOMS_PER_TIME), 0);
    const kind = typeof tx.kind === "string" ? tx.kind : Object.keys(tx.kind || {})[0];
    return el("tr", null, el("td", null, txLink(tx.txid)), el("td", null, kind),
      el("td", { class: "num" }, (tx.vin || []).length), el("td", { class: "num" }, atoms(out)),
      el("td", { class: "num" }, tx.size));
  });
}

function signersTable(commit) {
  return table(["Masternode", "Address", "Weight#"], commit.signers.map((s) =>
    el("tr", { class: "signer-row" }, el("td", { class: "mono", title: s.operator_key }, short(s.operator_key)),
      el("td", null, addressLink(s.address)), el("td", { class: "num" }, s.weight))), { id: "commit" });
}

async function blockView(main, id) {
  const { block: b, commit } = await api("block", { id: id });
  show(main, 
    el("h1", null, "Block " + b.height),
    fields([
      ["Hash", el("span", { class: "mono" }, b.hash)],
      ["Time", time(b.time_ms)],
      ["Proposer", el("span", { class: "mono" }, b.proposer)],
      ["Round", b.round],
      ["Transactions", b.nTx],
      ["Size", b.size + " bytes"],
      ["Previous", b.previousblockhash && blockLink(b.previousblockhash, b.height - 1)],
      ["Next", b.nextblockhash && blockLink(b.nextblockhash, b.height + 1)],
      ["Confirmations", b.confirmations],
      ["UTXO commitment", el("span", { class: "mono" }, b.utxocommitment)],
    ]),
    el("h2", null, "Commit certificate"),
    commit
      ? [el("p", null, "Round " + commit.round + ": " + commit.signers.length + " signers, weight " +
          commit.weight + " of " + commit.total_weight + " (quorum " + commit.quorum + ")"), signersTable(commit)]
      : el("p", { class: "muted" }, "This node stores no commit certificate for this block " +
          "(the genesis block has none; a fast-synced node has none below its snapshot)."),
    el("h2", null, "Transactions"),
    table(["Txid", "Kind", "Inputs#", "Output total#", "Size#"], txRows(b.tx || [])),
    b.tx && b.tx.length > SHOWN_TXS ? el("p", { class: "muted" }, "First " + SHOWN_TXS + " shown.") : null);
  return {};
}

function certificateSection(finality, blockCommit) {
  const cert = finality.certificate;
  const parts = [el("h2", null, "Finality certificate")];
  if (cert && cert.batches && cert.batches.length) {
    const signed = cert.batches.reduce((sum, b) => sum + b.weight, 0);
    parts.push(el("p", null, cert.batches.length + " signed vote batches from masternodes of weight " +
      signed + " (quorum " + finality.quorum + ")" +
      (finality.certificate_kept ? "; kept by the explorer when it became final." : ".")));
    parts.push(table(["Voter", "Weight#", "Batch#", "Set height#", "Txids in batch#", "Signature"],
      cert.batches.map((b) => el("tr", { class: "cert-row" },
        el("td", { class: "mono", title: b.voter }, short(b.voter)), el("td", { class: "num" }, b.weight),
        el("td", { class: "num" }, b.sequence), el("td", { class: "num" }, b.set_height),
        el("td", { class: "num" }, b.txids), el("td", { class: "mono", title: b.signature }, short(b.signature)))),
      { id: "certificate" }));
  } else if (finality.state === "pending") {
    parts.push(el("p", { class: "muted" }, "Not final yet: votes are still arriving."));
  } else {
    parts.push(el("p", { class: "muted" }, "This node no longer holds the vote batches (a block " +
      "confirmed the transaction before this page was opened); the block's commit certificate is its proof."));
  }
  if (blockCommit) {
    parts.push(el("p", { id: "block-commit" }, "Block commit: " + blockCommit.signers + " signers, weight " +
      blockCommit.weight + " / quorum " + blockCommit.quorum + " (round " + blockCommit.round + ")."));
  }
  return parts;
}

async function txView(main, txid) {
  const { tx, finality, block_commit: blockCommit } = await api("tx", { txid: txid });
  const share = Math.min(100, finality.quorum ? (100 * finality.weight) / finality.quorum : 0);
  show(main, 
    el("h1", null, "Transaction ", el("span", { class: "mono" }, tx.txid)),
    fields([
      ["State", el("span", { class: "state " + finality.state, id: "tx-state" }, finality.state)],
      ["Time to finality", finality.time_to_finality_ms === undefined ? null :
        el("span", { id: "time-to-finality" }, finality.time_to_finality_ms + " ms",
          el("span", { class: "muted" }, " from this node receiving it to final here"))],
      ["Votes", el("span", null, "weight " + finality.weight + " / quorum " + finality.quorum,
        el("div", { class: "bar" }, el("span", { style: "width:" + share + "%" })))],
      ["Block", tx.blockhash ? blockLink(tx.blockhash, tx.blockheight) : "not yet in a block"],
      ["Block time", tx.blocktime ? time(tx.blocktime * 1000) : null],
      ["Kind", typeof tx.kind === "string" ? tx.kind : JSON.stringify(tx.kind)],
      ["Size", tx.size + " bytes"],
    ]),
    certificateSection(finality, blockCommit),
    el("h2", null, "Inputs"),
    table(["Spends", "Public key"], (tx.vin || []).map((i) => el("tr", null,
      el("td", null, i.txid ? [txLink(i.txid), ":" + i.vout] : "coinbase"),
      el("td", { class: "mono", title: i.pubkey }, short(i.pubkey || ""))))),
    el("h2", null, "Outputs"),
    table(["#", "Address", "Amount#"], (tx.vout || []).map((o) => el("tr", null,
      el("td", null, o.n), el("td", null, addressLink(o.address)), el("td", { class: "num" }, coins(o.value))))));
  const settled = finality.state === "confirmed";
  const again = throttled(() => render(), 1000);
  return settled ? {} : { block: again, final(event) { if (event.txid === txid) again(); } };
}

async function addressView(main, address) {
  const a = await api("address", { address: address });
  const b = a.balance;
  show(main, 
    el("h1", null, "Address ", el("span", { class: "mono" }, a.address)),
    el("div", { class: "cards" },
      card("Balance", atoms(b.balance), "balance"),
      card("Confirmed", atoms(b.confirmed)),
      card("Final, not yet in a block", atoms(b.unconfirmed)),
      card("Being spent", atoms(b.spending)),
      card("Unspent outputs", b.utxos)),
    el("h2", null, "Unspent outputs"),
    table(["Output", "Amount#", "Height#"], a.outputs.map((o) => el("tr", null,
      el("td", null, txLink(o.txid), ":" + o.outputIndex), el("td", { class: "num" }, atoms(o.satoshis)),
      el("td", { class: "num" }, o.height === null ? "final" : o.height)))),
    a.outputs_total > a.outputs.length ? el("p", { class: "muted" }, a.outputs.length + " of " + a.outputs_total + " shown.") : null,
    el("h2", null, "History (newest first)"),
    table(["Transaction", "Block#", "Received#", "Sent#", "Net#"], a.history.map((h) => el("tr", { class: "history-row" },
      el("td", null, txLink(h.txid)), el("td", { class: "num" }, h.height === undefined || h.height === null ? "final" : h.height),
      el("td", { class: "num" }, atoms(h.received_atoms)), el("td", { class: "num" }, atoms(h.sent_atoms)),
      el("td", { class: "num " + (h.net_atoms < 0 ? "minus" : "plus") }, atoms(h.net_atoms)))), { id: "history" }));
  const again = throttled(() => render(), 2000);
  return { block: again, final: again };
}

async function masternodesView(main) {
  const m = await api("masternodes");
  show(main, 
    el("h1", null, "Masternodes"),
    el("p", { class: "muted" }, "Last vote: the newest of the last " + m.window +
      " blocks whose commit certificate carries the masternode's precommit."),
    table(["Operator key", "Address", "Tier", "Weight#", "Collateral", "Connected", "Last vote#", "Signed#"],
      m.masternodes.map((n) => el("tr", { class: "masternode-row" },
        el("td", { class: "mono", title: n.operator_key }, short(n.operator_key)),
        el("td", null, addressLink(n.address)), el("td", null, n.tier), el("td", { class: "num" }, n.weight),
        el("td", null, txLink(n.collateral.txid), ":" + n.collateral.vout),
        el("td", null, n.connected ? "yes" : "no"),
        el("td", { class: "num" }, n.last_signed_height === null || n.last_signed_height === undefined
          ? "none" : link("block/" + n.last_signed_height, n.last_signed_height)),
        el("td", { class: "num" }, n.signed === undefined ? "" : n.signed + " / " + m.window)))));
  return { block: throttled(() => render(), 5000) };
}

async function poolView(main) {
  const p = await api("pool");
  show(main, 
    el("h1", null, "Pool"),
    el("div", { class: "cards" },
      card("Waiting for finality", p.info.size), card("Bytes", p.info.bytes),
      card("Minimum fee", p.info.mempoolminfee + " TIME/kB")),
    el("h2", null, "Transactions (highest fee rate first)"),
    p.entries.length === 0 ? el("p", { class: "muted" }, "Empty: every transaction seen is final.") :
      table(["Txid", "Size#", "Fee#", "Waiting since", "Votes"], p.entries.map((e) => el("tr", null,
        el("td", null, txLink(e.txid)), el("td", { class: "num" }, e.size), el("td", { class: "num" }, coins(e.fee)),
        el("td", null, time(e.time * 1000)), el("td", null, e.finality.weight + " / " + e.finality.quorum)))),
    p.total > p.entries.length ? el("p", { class: "muted" }, p.entries.length + " of " + p.total + " shown.") : null);
  const again = throttled(() => render(), 2000);
  return { block: again, final: again };
}

async function peersView(main) {
  const { peers } = await api("peers");
  show(main, 
    el("h1", null, "Peers (" + peers.length + ")"),
    table(["Address", "Node key", "Masternode", "Direction", "Height#", "Ping#", "Received#", "Sent#", "Since"],
      peers.map((p) => el("tr", null,
        el("td", { class: "mono" }, p.addr), el("td", { class: "mono", title: p.nodekey }, short(p.nodekey)),
        el("td", null, p.masternode ? "yes" : "no"), el("td", null, p.inbound ? "inbound" : "outbound"),
        el("td", { class: "num" }, p.synced_blocks), el("td", { class: "num" }, p.pingtime === undefined ? "" : Math.round(p.pingtime * 1000) + " ms"),
        el("td", { class: "num" }, p.bytesrecv), el("td", { class: "num" }, p.bytessent),
        el("td", null, time(p.conntime * 1000))))));
  return { block: throttled(() => render(), 5000) };
}

// ---- routing ----------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, homeView],
  [/^\/block\/([0-9a-fA-F]{64}|\d+)$/, blockView],
  [/^\/tx\/([0-9a-fA-F]{64})$/, txView],
  [/^\/address\/([A-Za-z0-9]+)$/, addressView],
  [/^\/masternodes$/, masternodesView],
  [/^\/pool$/, poolView],
  [/^\/peers$/, peersView],
];

let listeners = {};
let renderCount = 0;

async function render() {
  const path = decodeURIComponent(location.hash.replace(/^#/, ""));
  const main = $("#view");
  const mine = ++renderCount;
  for (const [pattern, view] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    try {
      const wants = await view(main, ...match.slice(1));
      // A newer render started meanwhile: its listeners win.
      if (mine === renderCount) listeners = wants || {};
    } catch (e) {
      if (mine === renderCount) {
        listeners = {};
        show(main, el("p", { class: "error", id: "view-error" }, e.message));
      }
    }
    return;
  }
  listeners = {};
  show(main, el("p", { class: "error", id: "view-error" }, "No page " + path + ": try a link above."));
}

async function search(event) {
  event.preventDefault();
  const box = $("#search-error");
  const q = $("#search-input").value;
  try {
    const found = await api("search", { q: q });
    box.hidden = true;
    location.hash = "#/" + found.kind + "/" + found.id;
  } catch (e) {
    box.textContent = e.message;
    box.hidden = false;
  }
}

// ---- live feed --------------------------------------------------------------------------

function connect() {
  const live = $("#live");
  const source = new EventSource("events");
  let wasDown = false;
  source.onopen = () => {
    live.textContent = "live";
    live.className = "chip on";
    // Reconnected after a gap: what is shown may be stale.
    if (wasDown) render();
    wasDown = false;
  };
  source.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "chip off";
    wasDown = true;
  };
  source.addEventListener("block", (e) => {
    const block = JSON.parse(e.data);
    $("#tip-height").textContent = block.height;
    if (listeners.block) listeners.block(block);
  });
  source.addEventListener("final", (e) => {
    if (listeners.final) listeners.final(JSON.parse(e.data));
  });
  source.addEventListener("resync", () => render());
}

async function start() {
  $("#search").addEventListener("submit", search);
  window.addEventListener("hashchange", () => { $("#search-error").hidden = true; render(); });
  try {
    const summary = await api("summary");
    $("#chain").textContent = summary.chain;
    $("#tip-height").textContent = summary.height;
  } catch (e) {
    show($("#view"), el("p", { class: "error" }, e.message));
  }
  connect();
  render();
}

start();
