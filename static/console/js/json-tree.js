/* A collapsible JSON tree built from DOM nodes (never innerHTML, so values cannot inject markup). */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  const OPEN_DEPTH = 2;
  const MAX_CHILDREN = 500;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scalar(value) {
    if (value === null) return el("span", "jt-null", "null");
    if (typeof value === "string") return el("span", "jt-string", JSON.stringify(value));
    if (typeof value === "number") return el("span", "jt-number", String(value));
    if (typeof value === "boolean") return el("span", "jt-bool", String(value));
    return el("span", "jt-meta", String(value));
  }

  function node(key, value, depth, openDepth) {
    const isArray = Array.isArray(value);
    if (value === null || typeof value !== "object") {
      const row = el("div", "jt-row");
      if (key !== null) row.append(el("span", "jt-key", key + ": "));
      row.append(scalar(value));
      return row;
    }
    const entries = isArray ? value.map(function (v, i) { return [String(i), v]; }) : Object.entries(value);
    const details = el("details");
    details.open = depth < openDepth;
    const summary = el("summary");
    if (key !== null) summary.append(el("span", "jt-key", key + ": "));
    summary.append(el("span", "jt-meta", isArray ? "[" + entries.length + " items]" : "{" + entries.length + " keys}"));
    details.append(summary);
    entries.slice(0, MAX_CHILDREN).forEach(function (pair) { details.append(node(pair[0], pair[1], depth + 1, openDepth)); });
    if (entries.length > MAX_CHILDREN) details.append(el("div", "jt-row jt-meta", "… " + (entries.length - MAX_CHILDREN) + " more"));
    return details;
  }

  S.renderJson = function (container, value, options) {
    const openDepth = options && options.openDepth !== undefined ? options.openDepth : OPEN_DEPTH;
    container.replaceChildren(node(null, value, 0, openDepth));
  };

  S.mountJsonTrees = function (root) {
    (root || document).querySelectorAll("[data-json-source]").forEach(function (container) {
      const source = document.getElementById(container.dataset.jsonSource);
      if (source) S.renderJson(container, JSON.parse(source.textContent));
    });
  };

  document.addEventListener("DOMContentLoaded", function () { S.mountJsonTrees(document); });
})(window.Stepwise);
