// The tab's session: the token (pasted once, or from a `#token=T` link) kept in sessionStorage, so it lives as
// long as the tab and no other tab or window sees it; and the caller's role as the server names it in every
// response (`florist-caller-role`), which decides whether the page shows buttons that mutate.

const TOKEN_KEY = "florist-token";
// `#token=T`, or `#/jobs/ID&token=T` for a link to one page.
const FRAGMENT_TOKEN = /(^#|&)token=([^&]*)/;

export type Role = "viewer" | "operator" | "admin";
const MUTATING_ROLES: ReadonlySet<string> = new Set(["operator", "admin"]);

export class Session {
  private roleSeen: string | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly storage: Storage) {}

  /**
   * A link `…/#token=T` (or `…/#/jobs/ID&token=T`) logs the tab in: the token is kept and dropped from the address
   * bar (and from the history entry) at once, so it is not left on screen or in a bookmark. The fragment never
   * reaches the server: browsers do not send it.
   */
  takeTokenFromLink(location: Location, history: History): void {
    const match = FRAGMENT_TOKEN.exec(location.hash);
    if (match === null) {
      return;
    }
    this.setToken(decodeURIComponent(match[2] ?? ""));
    const rest = location.hash
      .replace(FRAGMENT_TOKEN, (_, lead: string) => (lead === "#" ? "#" : ""))
      .replace(/^#$/, "");
    history.replaceState(null, "", `${location.pathname}${location.search}${rest || "#/jobs"}`);
  }

  token(): string {
    return this.storage.getItem(TOKEN_KEY) ?? "";
  }

  setToken(token: string): void {
    this.roleSeen = undefined;
    if (token.trim()) {
      this.storage.setItem(TOKEN_KEY, token.trim());
    } else {
      this.storage.removeItem(TOKEN_KEY);
    }
    this.changed();
  }

  /** The role the server last named; undefined until a call answered. */
  role(): string | undefined {
    return this.roleSeen;
  }

  /** Whether to offer buttons that create, start, stop or delete jobs (the server checks again anyway). */
  mayMutate(): boolean {
    return this.roleSeen !== undefined && MUTATING_ROLES.has(this.roleSeen);
  }

  noteRole(role: string | null): void {
    if (role !== null && role !== this.roleSeen) {
      this.roleSeen = role;
      this.changed();
    }
  }

  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }
}
