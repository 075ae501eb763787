// The app shell: hash router, navigation, sign-in guard and the connectivity banner.
import "./style.css";
import { connectivity, session } from "./api";
import { clear, h } from "./dom";
import { createView } from "./views/create";
import { jobView } from "./views/job";
import { monitorView } from "./views/monitor";
import { signInView } from "./views/signin";
import { workflowDetailView } from "./views/workflow";
import { workflowsView } from "./views/workflows";

export interface ViewContext {
  root: HTMLElement;
  params: string[];
  signal: AbortSignal;
  /** Run fn when the gateway is reachable again (until the view is left). */
  onReconnect: (fn: () => void) => void;
}
type View = (ctx: ViewContext) => void;

interface Route {
  pattern: RegExp;
  view: View;
  title: string;
  nav?: string;
  public?: boolean;
}

const routes: Route[] = [
  { pattern: /^\/signin$/, view: signInView, title: "Sign in", public: true },
  { pattern: /^\/workflows$/, view: workflowsView, title: "Workflows", nav: "workflows" },
  { pattern: /^\/new$/, view: createView, title: "New workflow", nav: "new" },
  { pattern: /^\/workflows\/([^/]+)$/, view: workflowDetailView, title: "Workflow", nav: "workflows" },
  { pattern: /^\/jobs\/([^/]+)$/, view: jobView, title: "Job results", nav: "workflows" },
  { pattern: /^\/monitor$/, view: monitorView, title: "Monitoring", nav: "monitor" },
];

const NAV = [
  { key: "workflows", href: "#/workflows", label: "Workflows" },
  { key: "new", href: "#/new", label: "New workflow" },
  { key: "monitor", href: "#/monitor", label: "Monitoring" },
  { key: "docs", href: "/docs/", label: "REST API" },
];

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;
let current: AbortController | undefined;
let firstRoute = true; // on a fresh load focus stays at the top (skip link first)

function renderChrome(active?: string): void {
  clear(nav);
  const user = session.user;
  if (user) {
    nav.append(
      h(
        "ul",
        null,
        NAV.map((item) =>
          h("li", null, h("a", { href: item.href, "aria-current": item.key === active ? "page" : undefined }, item.label)),
        ),
      ),
    );
  }
  clear(who);
  if (user) {
    who.append(
      h("span", null, "Signed in as ", h("strong", { "data-testid": "current-user" }, user)),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            session.signOut();
            window.location.hash = "#/signin";
          },
        },
        "Sign out",
      ),
    );
  }
}

function route(): void {
  const path = window.location.hash.replace(/^#/, "") || "/workflows";
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  const match = routes.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!match) {
    window.location.replace("#/workflows");
    return;
  }
  if (!match.r.public && !session.user) {
    sessionStorage.setItem("slidelane.next", path);
    window.location.replace("#/signin");
    return;
  }
  renderChrome(match.r.nav);
  clear(main);
  document.title = `${match.r.title} · Slidelane`;
  const reconnectHooks: (() => void)[] = [];
  const off = connectivity.onReconnect(() => reconnectHooks.forEach((fn) => fn()));
  signal.addEventListener("abort", off);
  match.r.view({
    root: main,
    params: match.m!.slice(1).map(decodeURIComponent),
    signal,
    onReconnect: (fn) => reconnectHooks.push(fn),
  });
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    // After in-app navigation, move focus to the new page's heading (screen readers
    // announce it); views that focus a control themselves keep their choice.
    const idle = document.activeElement === document.body || document.activeElement === null || !main.contains(document.activeElement);
    if (!firstRoute && idle) heading.focus({ preventScroll: true });
  }
  firstRoute = false;
}

connectivity.subscribe((state) => {
  if (state.online) {
    banner.hidden = true;
    clear(banner);
    document.body.classList.remove("offline");
    return;
  }
  clear(banner);
  banner.append(
    h("strong", null, "Connection lost. "),
    h("span", null, state.detail, " Retrying automatically; this page recovers by itself when Slidelane is back."),
  );
  banner.hidden = false;
  document.body.classList.add("offline");
});

window.addEventListener("hashchange", route);
// Routes live in the hash, so following the skip link's href="#main" would leave the page
// (an unknown route falls back to the list, rebuilt): move focus into the page instead.
document.querySelector(".skip-link")?.addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
route();
