// Hash routes (`#/apps/%2Fusr%2Fbin%2Fcurl`): no server routes needed, the same in the
// Tauri window and in browser mode.

export type Route =
  | { view: "overview" }
  | { view: "apps" }
  | { view: "app"; key: string }
  | { view: "monitor" }
  /** `app` narrows the history to one app (the App panel links here). */
  | { view: "history"; app?: string }
  | { view: "settings" }
  | { view: "about" };

export function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/");
  switch (parts[0]) {
    case "apps":
      return parts[1] ? { view: "app", key: decodeURIComponent(parts.slice(1).join("/")) } : { view: "apps" };
    case "monitor":
      return { view: "monitor" };
    case "history":
      return parts[1] ? { view: "history", app: decodeURIComponent(parts.slice(1).join("/")) } : { view: "history" };
    case "settings":
      return { view: "settings" };
    case "about":
      return { view: "about" };
    default:
      return { view: "overview" };
  }
}

export function href(route: Route): string {
  switch (route.view) {
    case "app":
      return `#/apps/${encodeURIComponent(route.key)}`;
    case "history":
      return route.app ? `#/history/${encodeURIComponent(route.app)}` : "#/history";
    default:
      return `#/${route.view}`;
  }
}

export class Router {
  route = $state<Route>({ view: "overview" });

  constructor() {
    if (typeof window !== "undefined") {
      this.route = parseHash(window.location.hash);
      window.addEventListener("hashchange", () => (this.route = parseHash(window.location.hash)));
    }
  }

  go(route: Route): void {
    window.location.hash = href(route);
  }
}
