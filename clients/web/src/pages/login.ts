// Asks for a token when the server wants one. It is kept for this tab only (sessionStorage): closing the tab
// forgets it, and no other tab sees it. A link ending in `#token=T` does the same without this form.
import { h } from "../dom.js";
import type { Session } from "../session.js";

export function loginPage(main: HTMLElement, session: Session, why: string, done: () => void): void {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", "aria-label": "token" });
  const form = h(
    "form",
    { class: "panel login" },
    h("h1", {}, "Sign in"),
    h("p", {}, why),
    h("p", { class: "muted" }, "Paste the token you were given. It stays in this tab only, forgotten when it closes."),
    input,
    h("button", { type: "submit", "data-action": "use-token" }, "Use this token"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    session.setToken(input.value);
    done();
  });
  main.replaceChildren(form);
  input.focus();
}
