// End-to-end in a real browser: Debian's Chromium, driven by playwright-core, against
// `portcullis --serve` bridged to a real portcullisd in a lab namespace. Started by
// tests/tests/browser.rs, which owns the lab: when this script needs traffic it prints
// `STEP <name>` and waits for `DONE <detail>` on stdin (the Rust side runs the lab apps and
// checks what the helper did). Screenshots of every view go to $PCL_ARTIFACTS.
//
// Environment: PCL_URL (the one-time login URL), PCL_APP_A / PCL_APP_B / PCL_APP_C (app keys;
// C has a `.desktop` entry naming it PCL_APP_C_NAME, with an icon), PCL_SERVER
// (the lab server's address), PCL_ARTIFACTS (directory for screenshots).

import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (this script is run by tests/tests/browser.rs)`);
  return v;
};
const url = env("PCL_URL");
const appA = env("PCL_APP_A");
const appB = env("PCL_APP_B");
const appC = env("PCL_APP_C");
const appCName = env("PCL_APP_C_NAME");
const server = env("PCL_SERVER");
const artifacts = env("PCL_ARTIFACTS");
const base = new URL(url).origin;
const nameOf = (key) => key.slice(key.lastIndexOf("/") + 1);
mkdirSync(artifacts, { recursive: true });

const lines = createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
lines.on("line", (l) => (waiters.length ? waiters.shift()(l) : pending.push(l)));
function nextLine() {
  return pending.length ? Promise.resolve(pending.shift()) : new Promise((r) => waiters.push(r));
}
/** Asks the Rust side to act in the lab and waits for its answer. */
async function step(name) {
  console.log(`STEP ${name}`);
  const answer = await nextLine();
  if (!answer.startsWith("DONE")) throw new Error(`step ${name}: ${answer}`);
  return answer.slice(5);
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
  ],
});

try {
  // A wrong token is refused, and spends nothing.
  const stranger = await browser.newContext();
  const refused = await (await stranger.newPage()).goto(`${base}/?token=${"0".repeat(64)}`);
  check(refused.status() === 403, "a wrong token is refused (403)");
  const noCookie = await stranger.request.post(`${base}/api/request`, {
    headers: { Origin: base },
    data: { method: "status" },
  });
  check(noCookie.status() === 401, "a request without the session cookie is refused (401)");
  const noCookieIcon = await stranger.request.get(`${base}/api/app-icon?key=${encodeURIComponent(appC)}`);
  const noCookieEntries = await stranger.request.get(`${base}/api/app-entries`);
  check(noCookieIcon.status() === 401 && noCookieEntries.status() === 401, "app entries and icons need the session cookie (401)");
  await stranger.close();

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  // The window scrolls inside <main>; a taller viewport shows a whole view in one picture.
  const shot = async (name, height = 900) => {
    await page.setViewportSize({ width: 1440, height });
    await page.evaluate(() => document.querySelector("main")?.scrollTo(0, 0));
    await page.waitForTimeout(150);
    await page.screenshot({ path: `${artifacts}/${name}.png` });
    await page.setViewportSize({ width: 1440, height: 900 });
  };
  const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  const first = await page.goto(url);
  check(first.ok(), "the printed link signs the browser in");
  await page.waitForURL(`${base}/`);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByText("Protection is on").waitFor({ timeout: 15000 });
  check(true, "the overview shows the helper enforcing");

  // The session cookie is not enough for another origin, and the real helper answers ours.
  const foreign = await context.request.post(`${base}/api/request`, {
    headers: { Origin: "http://evil.example" },
    data: { method: "status" },
  });
  check(foreign.status() === 403, "a foreign Origin is refused (403) even with the cookie");
  const own = await context.request.post(`${base}/api/request`, { headers: { Origin: base }, data: { method: "status" } });
  const reply = await own.json();
  check(own.status() === 200 && reply.ok?.kind === "status" && reply.ok.data.enforcement.state === "enforcing", "a request round-trips to the real helper");

  // 1. A lab app's connection appears in the Monitor.
  await nav("Monitor").click();
  await page.getByRole("heading", { name: "Monitor" }).waitFor();
  await step("connect-a-allowed");
  const rowA = page.getByRole("row").filter({ hasText: nameOf(appA) }).filter({ hasText: "Allowed" });
  await rowA.first().waitFor({ timeout: 15000 });
  check(true, "app A's connection appears in the Monitor as allowed");
  await step("connect-c-allowed");
  await page.getByRole("row").filter({ hasText: appCName }).first().waitFor({ timeout: 15000 });
  check(true, "app C's connection appears in the Monitor under its .desktop entry's name");

  // 2. A rule added in the App panel blocks that app's next connection.
  await page.goto(`${base}/#/apps/${encodeURIComponent(appA)}`);
  await page.getByRole("heading", { name: nameOf(appA), level: 1 }).waitFor();
  const ruleInput = page.getByLabel("New rule");
  await ruleInput.fill("- bogus!!");
  await page.getByRole("button", { name: "Add rule" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "bogus" });
  await alert.waitFor();
  check((await alert.textContent()).includes("bogus!!"), `a bad rule is refused naming the token: ${await alert.textContent()}`);
  await ruleInput.fill(`- ${server}`);
  await page.getByRole("button", { name: "Add rule" }).click();
  await page.getByRole("list", { name: /Rules/ }).getByText(`- ${server}`).waitFor();
  check(true, "the rule is listed in the app panel");
  await step("connect-a-blocked");
  await page.getByRole("list", { name: new RegExp(`${nameOf(appA)}'s connections`) }).getByText("Blocked", { exact: true }).first().waitFor({ timeout: 15000 });
  check(true, "the app panel's recent history shows the blocked connection");
  await shot("app-panel", 1500);

  await nav("Monitor").click();
  const blockedRow = page.getByRole("row").filter({ hasText: nameOf(appA) }).filter({ hasText: "Blocked" });
  await blockedRow.first().waitFor({ timeout: 15000 });
  await blockedRow.first().click();
  const why = page.getByRole("complementary");
  await why.getByText(`- ${server}`).first().waitFor();
  check(true, "the Monitor shows the block and the rule that decided it");
  await shot("monitor");

  // 3. A prompt appears and the chosen answer takes effect.
  await nav("Settings").click();
  await page.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
  await page.getByRole("radiogroup", { name: "Default action" }).getByRole("radio", { name: "Ask" }).click();
  await page.getByText("Set globally").first().waitFor();
  await shot("settings", 1400);
  await nav("Overview").click();
  await step("connect-b-asks");
  const dialog = page.getByRole("dialog");
  await dialog.getByText(nameOf(appB)).first().waitFor({ timeout: 15000 });
  check((await dialog.textContent()).includes(server), "the prompt shows the app and the destination");
  await dialog.getByRole("radio", { name: "Always" }).click();
  await page.screenshot({ path: `${artifacts}/prompt.png` });
  await page.keyboard.press("a");
  await dialog.waitFor({ state: "detached", timeout: 10000 });
  const detail = await step("check-b-allowed");
  check(true, `the answer took effect: ${detail}`);

  // 4. The History view shows what the helper recorded, searches it, and explains a row.
  await nav("History").click();
  await page.getByRole("heading", { name: "History", level: 1 }).waitFor();
  const history = page.getByRole("grid", { name: /^History/ });
  const histA = history.getByRole("row").filter({ hasText: nameOf(appA) }).filter({ hasText: "Blocked" });
  for (let i = 0; ; i++) {
    try {
      await histA.first().waitFor({ timeout: 2000 });
      break;
    } catch (e) {
      // The helper writes history in batches: ask again.
      if (i === 7) throw e;
      await page.getByRole("button", { name: "Refresh" }).click();
    }
  }
  check(true, "the History view lists app A's blocked connection");
  await page.getByLabel("Search domain or app").fill(nameOf(appB));
  await history.getByRole("row").filter({ hasText: nameOf(appB) }).first().waitFor();
  await page.waitForFunction((a) => ![...document.querySelectorAll('[role="grid"] [role="row"]')].some((r) => r.textContent.includes(a)), nameOf(appA));
  check(true, "searching the History for app B leaves only app B's rows");
  await page.getByLabel("Search domain or app").fill("no-such-app-or-domain");
  await page.getByText("Nothing in the history matches").waitFor();
  check((await history.getByRole("row").count()) === 0, "a search without hits shows no rows and says so");
  await shot("history-empty");
  await page.getByLabel("Search domain or app").fill("");
  await histA.first().click();
  await page.getByRole("complementary").getByRole("button", { name: "Block this for this app" }).waitFor();
  check((await page.getByRole("complementary").textContent()).includes(server), "a History row's details name its destination");
  await shot("history");
  await page.getByRole("button", { name: "Clear history…" }).click();
  const confirm = page.getByRole("alertdialog", { name: "Clear all history?" });
  await confirm.waitFor();
  await page.screenshot({ path: `${artifacts}/history-clear.png` });
  await page.keyboard.press("Escape");
  await confirm.waitFor({ state: "detached" });
  check((await history.getByRole("row").count()) > 0, "cancelling the clear confirmation keeps the history");

  // The remaining views, for people to look at.
  await nav("Overview").click();
  await page.getByText("Recent blocks").waitFor();
  await page.getByRole("region", { name: /Top talkers/ }).getByRole("link", { name: nameOf(appA) }).waitFor();
  check(true, "the Overview's top talkers list app A");
  await shot("overview");
  await nav("Apps").click();
  await page.getByRole("heading", { name: "Apps", level: 1 }).waitFor();
  await page.getByRole("row").filter({ hasText: nameOf(appB) }).waitFor();
  const rowC = page.getByRole("row").filter({ hasText: appC });
  await rowC.getByRole("link", { name: appCName }).waitFor();
  const icon = rowC.locator("img");
  await icon.waitFor();
  await page.waitForFunction((el) => el.complete && el.naturalWidth === 16, await icon.elementHandle());
  check(true, `the Apps view names app C "${appCName}" with its icon, from its .desktop entry`);
  const entries = await (await context.request.get(`${base}/api/app-entries`)).json();
  check(entries[appC]?.name === appCName && entries[appC]?.icon === true, "the entry table maps app C's path to its entry");
  for (const key of ["/etc/passwd", appA, `../../${appC}`, "lab-scribble"]) {
    const r = await context.request.get(`${base}/api/app-icon?key=${encodeURIComponent(key)}`);
    check(r.status() === 404, `the icon route serves nothing for ${key} (404)`);
  }
  await shot("apps");
  await page.emulateMedia({ colorScheme: "dark" });
  await nav("Monitor").click();
  await page.getByRole("row").filter({ hasText: nameOf(appB) }).first().waitFor();
  await shot("monitor-dark");
  await nav("History").click();
  await histA.first().waitFor();
  await shot("history-dark");
  await nav("Overview").click();
  await shot("overview-dark");
  console.log("PASS");
} finally {
  await browser.close();
  lines.close();
}
