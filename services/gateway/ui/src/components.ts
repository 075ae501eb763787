// Small shared pieces: progress bars, state badges, loading and error boxes.
import type { ApiProblem } from "./api";
import { h } from "./dom";
import type { Progress } from "./gen/slidelane/v1/types_pb";
import { fraction, progressText, stateClass } from "./state";

/** A labelled <progress>: value/max are tiles; the text says the same for screen readers. */
export function progressBar(progress: Progress | undefined, label: string, done = false): HTMLElement {
  const total = progress ? Number(progress.tilesTotal) : 0;
  const value = progress ? Number(progress.tilesDone) : 0;
  const bar = h("progress", {
    class: "bar",
    max: total > 0 ? total : 1,
    value: total > 0 ? value : done ? 1 : 0,
    "aria-label": label,
    "data-done": String(done || (total > 0 && value >= total)),
  });
  const text = h("span", { class: "bar-text" }, progressText(progress, done));
  const wrapper = h("div", { class: "bar-wrap", title: `${Math.round((done ? 1 : fraction(progress)) * 100)}%` }, bar, text);
  return wrapper;
}

export function stateBadge(label: string): HTMLElement {
  return h("span", { class: stateClass(label), "data-state": label }, label);
}

export function loading(what: string): HTMLElement {
  return h("p", { class: "loading", role: "status", "aria-live": "polite" }, h("span", { class: "spinner", "aria-hidden": "true" }), `Loading ${what}…`);
}

export function errorBox(title: string, problem: ApiProblem, retry?: () => void): HTMLElement {
  const box = h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", null, title),
    h("p", null, problem.unreachable ? "The gateway cannot be reached right now; this retries when it is back." : `${problem.message} (${problem.code})`),
  );
  if (problem.fields.size > 0) {
    box.append(h("ul", null, [...problem.fields].map(([field, text]) => h("li", null, h("code", null, field), ": ", text))));
  }
  if (retry) box.append(h("button", { type: "button", onclick: retry }, "Try again"));
  return box;
}

export function emptyState(text: string, ...extra: (Node | string)[]): HTMLElement {
  return h("div", { class: "empty" }, h("p", null, text), ...extra);
}
