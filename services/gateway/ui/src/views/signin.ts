// Dev sign-in: the user id is kept in localStorage and sent as x-user-id.
import { session } from "../api";
import { h, nextId } from "../dom";
import type { ViewContext } from "../main";

export function signInView({ root }: ViewContext): void {
  const inputId = nextId("user");
  const hintId = nextId("hint");
  const errorId = nextId("err");
  const input = h("input", {
    id: inputId,
    name: "user",
    autocomplete: "username",
    required: true,
    value: session.user ?? "",
    "aria-describedby": `${hintId} ${errorId}`,
    spellcheck: "false",
  });
  const error = h("p", { id: errorId, class: "field-error", "aria-live": "polite" });
  const form = h(
    "form",
    {
      class: "card narrow",
      "aria-labelledby": "signin-title",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const user = input.value.trim();
        const why = session.check(user);
        if (why) {
          error.textContent = why;
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        session.signIn(user);
        const next = sessionStorage.getItem("slidelane.next") || "/workflows";
        sessionStorage.removeItem("slidelane.next");
        window.location.hash = `#${next}`;
      },
    },
    h("h1", { id: "signin-title" }, "Sign in"),
    h(
      "p",
      { id: hintId, class: "hint" },
      "Development sign-in: your user id is your tenant. Every request carries it as the X-User-ID header; you see only your own workflows.",
    ),
    h("label", { for: inputId }, "User id"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  root.append(form);
  input.focus();
}
