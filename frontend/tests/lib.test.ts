import { describe, expect, it } from "vitest";
import { describeRule, destination, endpoint, relativeTime, ruleFor, countsByApp, appName } from "../src/lib/format";
import { scrollToShow, visibleRange } from "../src/lib/virtual";
import { buildAnswer, fitTarget, groupPrompts, secondsLeft } from "../src/lib/prompts";
import { href, parseHash } from "../src/lib/router.svelte";
import { conn, prompt } from "./fake";

describe("format", () => {
  it("writes times relative to now", () => {
    expect(relativeTime(1000, 2000)).toBe("just now");
    expect(relativeTime(1, 42_001)).toBe("42 s ago");
    expect(relativeTime(1, 5 * 60_000)).toBe("5 min ago");
    expect(relativeTime(1, 3 * 3600_000)).toBe("3 h ago");
    expect(relativeTime(0, 3 * 3600_000)).toBe("never");
  });

  it("brackets IPv6 endpoints and prefers the domain", () => {
    expect(endpoint("10.0.0.1", 443)).toBe("10.0.0.1:443");
    expect(endpoint("fd77::2", 80)).toBe("[fd77::2]:80");
    expect(endpoint("10.0.0.1", null)).toBe("10.0.0.1");
    expect(destination(conn(1, { domain: "example.com" }))).toBe("example.com:443");
    expect(destination(conn(1, { direction: "inbound", local_port: 22 }))).toBe("10.77.0.2:22");
  });

  it("makes the rule a monitor row asks for", () => {
    expect(ruleFor(conn(1), true)).toBe("+ 10.77.0.2 tcp/443");
    expect(ruleFor(conn(1, { protocol: "icmp", remote_port: null }), false)).toBe("- 10.77.0.2 icmp");
    expect(ruleFor(conn(1, { direction: "inbound", local_port: 22 }), false)).toBe("- Inbound 10.77.0.2 tcp/22");
  });

  it("explains what rule text matches", () => {
    expect(describeRule("- *.tracker.example")).toBe("Blocks connections to subdomains of tracker.example");
    expect(describeRule("+ 10.0.0.0/8 tcp/443")).toBe("Allows connections to addresses in 10.0.0.0/8 on TCP port 443");
    expect(describeRule("- LAN")).toBe("Blocks connections to the local network scope");
    expect(describeRule("+ Inbound * tcp/22")).toBe("Allows connections from any address on TCP port 22");
    expect(describeRule("- DE")).toBe("Blocks connections to country DE");
    expect(describeRule("block everything")).toBeNull();
  });

  it("counts connections and blocks per app and names apps", () => {
    const blocked = conn(2);
    blocked.explanation = { ...blocked.explanation, verdict: "block" };
    const m = countsByApp([conn(1), blocked, conn(3, { app: "/bin/other" })]);
    expect(m.get("/usr/bin/curl")).toEqual({ total: 2, blocked: 1 });
    expect(appName("/usr/lib/firefox/firefox")).toBe("firefox");
    expect(appName("system:kernel")).toBe("System (kernel)");
  });
});

describe("virtual list", () => {
  it("renders only the visible window of 10,000 rows", () => {
    expect(visibleRange(220_000, 600, 44, 10_000)).toEqual({ start: 4992, end: 5023 });
    expect(visibleRange(440_000, 600, 44, 10_000)).toEqual({ start: 9992, end: 10_000 });
    expect(visibleRange(0, 600, 44, 10_000)).toEqual({ start: 0, end: 23 });
    expect(visibleRange(0, 600, 44, 0)).toEqual({ start: 0, end: 0 });
  });

  it("scrolls just enough to show a row", () => {
    expect(scrollToShow(0, 100, 400, 40)).toBe(0);
    expect(scrollToShow(20, 0, 400, 40)).toBe(440);
    expect(scrollToShow(5, 0, 400, 40)).toBe(0);
  });
});

describe("prompts", () => {
  it("groups per app, oldest first", () => {
    const a = prompt(1, { created_unix_ms: 10 });
    const b = prompt(2, { app: "/bin/b", app_name: "b", created_unix_ms: 5 });
    const c = prompt(3, { created_unix_ms: 20 });
    const g = groupPrompts([a, b, c]);
    expect(g.map((x) => x.app)).toEqual(["/bin/b", "/usr/bin/curl"]);
    expect(g[1].prompts.map((p) => p.id)).toEqual([1, 3]);
  });

  it("builds answers and keeps targets that fit", () => {
    expect(buildAnswer(true, "ip", "minutes", 5)).toEqual({ allow: true, target: "ip", duration: { kind: "minutes", minutes: 5 } });
    expect(buildAnswer(false, "port", "always", 5).duration).toEqual({ kind: "always" });
    expect(buildAnswer(true, "ip", "minutes", 0).duration).toEqual({ kind: "minutes", minutes: 1 });
    expect(fitTarget("domain", prompt(1))).toBe("ip_port");
    expect(fitTarget("domain", prompt(1, { domain: "x.example" }))).toBe("domain");
    const p = prompt(1, { expires_unix_ms: 10_000 });
    expect(secondsLeft(p, 1_500)).toBe(9);
    expect(secondsLeft(p, 20_000)).toBe(0);
  });
});

describe("routes", () => {
  it("round-trip through the hash", () => {
    const r = { view: "app", key: "/usr/bin/curl" } as const;
    expect(parseHash(href(r))).toEqual(r);
    expect(parseHash("#/monitor")).toEqual({ view: "monitor" });
    expect(parseHash("#/history")).toEqual({ view: "history" });
    expect(parseHash(href({ view: "history", app: "/usr/bin/curl" }))).toEqual({ view: "history", app: "/usr/bin/curl" });
    expect(parseHash("")).toEqual({ view: "overview" });
  });
});
