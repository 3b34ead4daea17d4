// The operator page in a real browser: Debian's headless Chromium, driven by playwright-core.
// Starts `flowgate serve` on a fresh data directory, gives it requests, dead letters, a
// schedule and a backfill, then checks each view, keyboard-only use, and what the page says
// when the server goes away. A screenshot of each view goes to the artifacts directory.
//
//   node tests/ui/run.mjs <flowgate binary> [artifacts dir]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const [bin, out = "target/ui-artifacts"] = process.argv.slice(2);
if (!bin) throw new Error("usage: node tests/ui/run.mjs <flowgate binary> [artifacts dir]");
fs.mkdirSync(out, { recursive: true });

const results = [];
async function check(name, body) {
  try {
    await body();
    results.push([name, null]);
    console.log(`ui: ok   ${name}`);
  } catch (e) {
    results.push([name, e]);
    console.log(`ui: FAIL ${name}\n${e.stack || e}`);
  }
}
function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// ---- a server with something to show -------------------------------------------------------

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

async function freePort() {
  const probe = http.createServer();
  const port = await listen(probe);
  await new Promise((r) => probe.close(r));
  return port;
}

// A target that refuses every hand-off, so its instances are dead-lettered (kind `dispatch`).
const refusing = http.createServer((req, res) => {
  req.resume();
  res.writeHead(400, { "content-type": "text/plain" });
  res.end("this target refuses everything");
});
const targetPort = await listen(refusing);

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flowgate-ui-"));
const server = spawn(bin, ["serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`, "--allow-private-targets"], {
  stdio: ["ignore", "ignore", "inherit"],
  env: { ...process.env, RUST_LOG: "warn" },
});
const exited = new Promise((resolve) => server.on("exit", resolve));

async function api(method, route, body, headers = {}) {
  const response = await fetch(base + route, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function eventually(what, probe, seconds = 20) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

await eventually("the server", async () => (await fetch(`${base}/healthz`)).ok);
const schema = { type: "object", properties: { amount: { type: "integer", minimum: 1 } } };
expect((await api("PUT", "/v1/workflows/orders", { name: "Orders", params_schema: schema })).status === 201, "orders registered");
const hook = { type: "webhook", url: `http://127.0.0.1:${targetPort}/hook` };
expect((await api("PUT", "/v1/workflows/payouts", { name: "Payouts", params_schema: schema, target: hook })).status === 201, "payouts registered");
const first = await api("POST", "/v1/workflows/orders/instances", { params: { amount: 1 } }, { "idempotency-key": "order-1", prefer: "wait=5" });
expect(first.status === 201, `the first order was created: ${JSON.stringify(first)}`);
for (let n = 2; n <= 30; n++) {
  await api("POST", "/v1/workflows/orders/instances", { params: { amount: n } }, { "idempotency-key": `order-${n}` });
}
for (let n = 1; n <= 3; n++) {
  await api("POST", "/v1/workflows/payouts/instances", { params: { amount: n } }, { "idempotency-key": `payout-${n}` });
}
const nightly = { cron: "0 2 * * *", timezone: "Europe/Paris", params: { amount: 1 } };
expect((await api("PUT", "/v1/workflows/orders/schedules/nightly", nightly)).status === 201, "a schedule");
const hourly = { rate: "rate(1 hours)", params: { amount: 1 } };
const hourlyPut = await api("PUT", "/v1/workflows/payouts/schedules/hourly", hourly);
expect(hourlyPut.status === 201, `another workflow's schedule: ${JSON.stringify(hourlyPut)}`);
const dates = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"];
const backfill = await api("POST", "/v1/workflows/orders/backfills", { dates, params: { amount: 1 } });
expect(backfill.status === 202, `a backfill: ${JSON.stringify(backfill)}`);
await eventually("three dead letters", async () => (await api("GET", "/v1/dlq")).body.items.length === 3);

// ---- the browser ---------------------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const consoleErrors = [];
page.on("console", (m) => m.type() === "error" && !/Failed to load resource/.test(m.text()) && consoleErrors.push(m.text()));
page.on("pageerror", (e) => consoleErrors.push(String(e)));
const shot = (name) => page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });

await check("the page and its assets come from the binary, under a strict policy", async () => {
  const response = await page.goto(`${base}/ui`);
  expect(response.status() === 200, `GET /ui answered ${response.status()}`);
  const policy = response.headers()["content-security-policy"] || "";
  expect(policy.includes("default-src 'none'") && policy.includes("frame-ancestors 'none'"), policy);
  await page.waitForSelector("#find-q");
});

await check("find a request by idempotency key, request id and instance id: its timeline", async () => {
  await page.fill("#find-q", "order-1");
  await page.click("#find-form button");
  await page.waitForSelector(".timeline li");
  const text = await page.textContent("#find-result");
  expect(text.includes("idempotency key") && text.includes("accepted") && text.includes("created"), text);
  expect(/[0-9a-f]{32}/.test(text), `a trace id is shown: ${text}`);
  await shot("find");
  const { request_id, instance_id } = first.body;
  for (const [q, matched] of [[request_id, "request id"], [instance_id, "instance id"]]) {
    await page.fill("#find-q", q);
    await page.click("#find-form button");
    await page.waitForFunction((m) => document.querySelector("#find-result").textContent.includes(m), matched);
  }
  await page.fill("#find-q", "no-such-thing");
  await page.click("#find-form button");
  await page.waitForFunction(() => document.querySelector("#find-result").textContent.includes("Nothing of yours"));
});

await check("live counts and lag charts", async () => {
  await page.click("#tab-live");
  await page.waitForFunction(() => /Last minute: \d+ accepted/.test(document.querySelector("#live-summary").textContent));
  const summary = await page.textContent("#live-summary");
  const accepted = Number(/Last minute: (\d+) accepted/.exec(summary)[1]);
  expect(accepted >= 33, `the starts of the last minute are counted: ${summary}`);
  expect(/Lag p50 [\d.]+ m?s, p99/.test(summary), summary);
  expect((await page.locator("#chart-counts polyline").count()) === 3, "three count series");
  expect((await page.locator("#chart-lag polyline").count()) === 2, "two lag series");
  await shot("live");
});

await check("dead letters grouped by reason kind and workflow; replay is a dry run, then a confirmation", async () => {
  await page.click("#tab-dlq");
  await page.waitForSelector("#dlq-result table");
  const row = await page.textContent("#dlq-result tbody tr");
  expect(row.includes("dispatch") && row.includes("payouts") && row.includes("3"), row);
  await shot("dlq");
  await page.click("#dlq-result tbody tr button");
  await page.waitForFunction(() => document.querySelector("#replay").textContent.includes("Dry run:"));
  const plan = await page.textContent("#replay");
  expect(plan.includes("3 would be re-sent") && plan.includes("Nothing has changed yet"), plan);
  expect((await api("GET", "/v1/dlq")).body.items.length === 3, "a dry run changes nothing");
  await shot("dlq-dry-run");
  await page.click("#replay button.danger");
  await page.waitForFunction(() => /Replayed \d|Could not/.test(document.querySelector("#replay").textContent));
  const done = await page.textContent("#replay");
  expect(done.includes("Replayed 3"), done);
});

await check("schedules with their next fires, and each backfill's progress", async () => {
  await page.click("#tab-schedules");
  // Every workflow's schedules at once, and the backfills.
  await page.waitForSelector("#schedules-result table");
  const all = await page.textContent("#schedules-result");
  expect(all.includes("orders") && all.includes("nightly") && all.includes("payouts") && all.includes("hourly"), all);
  expect(all.includes("Europe/Paris") && /\d{4}-\d\d-\d\d \d\d:\d\d/.test(all), `next fire times: ${all}`);
  await page.waitForSelector("#backfills-result table");
  const backfills = await page.textContent("#backfills-result");
  expect(backfills.includes(backfill.body.backfill_id) && backfills.includes("/3"), backfills);
  await shot("schedules");
  // Then one workflow's.
  await page.fill("#schedules-workflow", "orders");
  await page.click("#schedules-form button");
  await page.waitForFunction(() => {
    const result = document.querySelector("#schedules-result");
    return result.querySelector("table") && !result.textContent.includes("hourly");
  });
  const one = await page.textContent("#schedules-result");
  expect(one.includes("nightly") && !one.includes("payouts"), one);
});

await check("the runs of a workflow under a limit: unfinished against it, skipped, how long they took", async () => {
  const serial = { name: "Serial", params_schema: schema, concurrency: { limit: 1, on_limit: "skip" } };
  expect((await api("PUT", "/v1/workflows/serial", serial)).status === 201, "serial registered");
  const ran = await api("POST", "/v1/workflows/serial/instances", { params: { amount: 1 } }, { prefer: "wait=5" });
  expect(ran.status === 201, `the first run was created: ${JSON.stringify(ran)}`);
  for (let n = 2; n <= 3; n++) {
    const skipped = await api("POST", "/v1/workflows/serial/instances", { params: { amount: n } }, { prefer: "wait=5" });
    expect(skipped.status === 202 && skipped.body.status === "SKIPPED", `the next is skipped: ${JSON.stringify(skipped)}`);
  }
  await page.click("#tab-runs");
  await page.fill("#runs-workflow", "serial");
  await page.click("#runs-form button");
  await page.waitForFunction(() => document.querySelector("#runs-result").textContent.includes("Against each limit"));
  let text = await page.textContent("#runs-result");
  expect(text.includes("at most 1 unfinished for the workflow") && text.includes("1 unfinished") && text.includes("2 skipped"), text);
  const done = await api("POST", `/v1/instances/${ran.body.instance_id}/status`, { status: "SUCCEEDED" });
  expect(done.status === 200 && done.body.status === "SUCCEEDED", JSON.stringify(done));
  await page.click("#runs-form button");
  await page.waitForFunction(() => document.querySelector("#runs-result").textContent.includes("95th percentile"));
  text = await page.textContent("#runs-result");
  expect(text.includes("0 unfinished") && text.includes("SUCCEEDED"), text);
  await shot("runs");
});

await check("the audit of the last hour and the last day: every start accounted for", async () => {
  await page.click("#tab-audit");
  await page.waitForSelector("#audit-hour table");
  await page.waitForSelector("#audit-day table");
  for (const id of ["#audit-hour", "#audit-day"]) {
    const text = await page.textContent(id);
    expect(text.includes("accepted = created + dead + in_flight + overdue + waiting + skipped: holds"), text);
    expect(text.includes("orders") && text.includes("payouts") && text.includes("all workflows"), text);
  }
  const total = await page.$$eval("#audit-hour tbody tr:last-child td", (tds) => tds.map((t) => t.textContent));
  expect(total[0] === "all workflows" && Number(total[1]) >= 33, `the hour's starts are counted: ${total}`);
  await shot("audit");
});

await check("the page works with a keyboard alone", async () => {
  const keys = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  await keys.goto(`${base}/ui`);
  await keys.waitForSelector("#find-q");
  const focused = () => keys.evaluate(() => document.activeElement && document.activeElement.id);
  let steps = 0;
  while ((await focused()) !== "find-q" && steps++ < 12) await keys.keyboard.press("Tab");
  expect((await focused()) === "find-q", "Tab reaches the search field");
  const outline = await keys.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  expect(outline !== "none", "focus is visible");
  await keys.keyboard.type(first.body.request_id);
  await keys.keyboard.press("Enter");
  await keys.waitForSelector(".timeline li");
  await keys.keyboard.press("Shift+Tab");
  expect((await focused()) === "tab-find", `Shift+Tab goes back to the selected tab, not ${await focused()}`);
  await keys.keyboard.press("ArrowRight");
  await keys.keyboard.press("ArrowRight");
  expect((await focused()) === "tab-dlq", "arrow keys move between the tabs");
  await keys.waitForSelector("#dlq-result table");
  await keys.keyboard.press("Tab");
  expect((await focused()) === "dlq-refresh", "Tab enters the view");
  await keys.keyboard.press("Tab");
  await keys.keyboard.press("Enter");
  await keys.waitForFunction(() => document.querySelector("#replay").textContent.includes("Dry run:"));
  const onConfirm = await keys.evaluate(() => document.activeElement.textContent);
  expect(onConfirm.startsWith("Confirm"), `the confirmation takes the focus: ${onConfirm}`);
  await keys.keyboard.press("Tab");
  await keys.keyboard.press("Enter");
  expect(await keys.evaluate(() => document.querySelector("#replay").hidden), "Cancel closes the replay");
  await keys.screenshot({ path: path.join(out, "keyboard.png"), fullPage: true });
  await keys.close();
});

await check("a clear message when the server cannot be reached", async () => {
  await page.click("#tab-find");
  server.kill("SIGTERM");
  await exited;
  await page.fill("#find-q", "order-2");
  await page.click("#find-form button");
  await page.waitForSelector("#unreachable:not([hidden])");
  const banner = await page.textContent("#unreachable");
  expect(banner.includes("Cannot reach the Flowgate server") && banner.includes("flowgate serve"), banner);
  expect((await page.getAttribute("#unreachable", "role")) === "alert", "announced to screen readers");
  await shot("unreachable");
});

await check("no script errors on the page", async () => {
  expect(consoleErrors.length === 0, consoleErrors.join("\n"));
});

await browser.close();
server.kill("SIGKILL");
refusing.close();
fs.rmSync(dataDir, { recursive: true, force: true });
const failed = results.filter(([, e]) => e);
console.log(`ui: ${results.length - failed.length} passed, ${failed.length} failed; screenshots in ${out}`);
process.exit(failed.length ? 1 : 0);
