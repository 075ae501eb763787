// A tiny DOM helper: h("tag", {attrs}, ...children). No framework.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el: Element, attrs: Attrs | null): void {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === "class") {
      el.setAttribute("class", String(value));
    } else if (key === "style" && typeof value === "object") {
      Object.assign((el as HTMLElement).style, value);
    } else if (key in el && !(el instanceof SVGElement) && typeof value !== "string") {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

/** Run `rebuild` (which replaces table rows marked with `attribute`) and put focus back on
 * the link of the row that had it: a live update must not drop a keyboard user's place. */
export function keepingRowFocus(container: Element, attribute: string, rebuild: () => void): void {
  const focused = document.activeElement?.closest(`tr[${attribute}]`)?.getAttribute(attribute);
  rebuild();
  if (focused) container.querySelector<HTMLElement>(`tr[${attribute}="${CSS.escape(focused)}"] a`)?.focus();
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function nextId(prefix: string): string {
  uid += 1;
  return `${prefix}-${uid}`;
}

export function formatTime(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (!ts || ts.seconds === 0n) return "—";
  const date = new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** The nodes of a list, without the absent ones (for replaceChildren). */
export function present(...items: (Node | string | null | undefined | false)[]): (Node | string)[] {
  return items.filter((x): x is Node | string => x !== null && x !== undefined && x !== false);
}
