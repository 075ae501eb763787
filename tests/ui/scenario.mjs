// The UI scenario in a real browser: Debian's chromium driven by playwright-core.
//
//   node tests/ui/scenario.mjs
//
// Environment: SLIDELANE_URL (the public port), SLIDE_PATH (a generated slide inside
// the cluster's slide root), OUT_DIR (screenshots), CHROMIUM (default /usr/bin/chromium),
// STOP_GATEWAY_CMD / START_GATEWAY_CMD (optional shell commands that really stop and
// restart the gateway; without them the outage is simulated by failing its requests).
// Exit code 0 when every check passed; each check prints one line.
import { execSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const uiDir = resolve(here, "../../services/gateway/ui");
const { chromium } = createRequire(join(uiDir, "package.json"))("playwright-core");

const BASE = (process.env.SLIDELANE_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "");
const SLIDE = process.env.SLIDE_PATH;
const OUT = process.env.OUT_DIR ?? resolve(here, "../../test-output/ui");
const RUN_TIMEOUT = Number(process.env.WORKFLOW_TIMEOUT_S ?? 420) * 1000;
if (!SLIDE) throw new Error("SLIDE_PATH is required");
mkdirSync(OUT, { recursive: true });

const suffix = Date.now().toString(36);
const ALICE = `alice-${suffix}`;
const BOB = `bob-${suffix}`;
const results = [];
const consoleErrors = [];
let allowNetworkErrors = false;

function check(name, ok, detail = "") {
  results.push({ name, ok, detail });
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
  if (!ok) throw new Error(`check failed: ${name} ${detail}`);
}

async function shot(page, name, target) {
  const path = join(OUT, `${name}.png`);
  await (target ?? page).screenshot({ path, fullPage: !target });
  return path;
}

/** Count pixels that differ between two PNG screenshots, decoded by the browser itself. */
async function pixelDiff(page, a, b) {
  return page.evaluate(
    async ([da, db]) => {
      const load = (src) =>
        new Promise((ok, bad) => {
          const img = new Image();
          img.onload = () => ok(img);
          img.onerror = bad;
          img.src = src;
        });
      const [ia, ib] = await Promise.all([load(da), load(db)]);
      const w = Math.min(ia.width, ib.width);
      const h = Math.min(ia.height, ib.height);
      const pixels = (img) => {
        const c = document.createElement("canvas");
        c.width = w;
        c.height = h;
        const ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return ctx.getImageData(0, 0, w, h).data;
      };
      const pa = pixels(ia);
      const pb = pixels(ib);
      let diff = 0;
      for (let i = 0; i < pa.length; i += 4) {
        if (Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2]) > 30) diff += 1;
      }
      return { diff, total: w * h };
    },
    [`data:image/png;base64,${a.toString("base64")}`, `data:image/png;base64,${b.toString("base64")}`],
  );
}

async function signIn(page, user) {
  await page.goto(`${BASE}/#/signin`);
  await page.getByLabel("User id").fill(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/#\/workflows$/);
  await page.getByTestId("current-user").filter({ hasText: user }).waitFor();
}

async function fillJob(page, index, { jobId, jobType, imagePath, branch, dependsOn = [] }) {
  const job = page.locator("fieldset.job").nth(index);
  await job.getByLabel("Job id").fill(jobId);
  await job.getByLabel("Job type").selectOption(jobType);
  await job.getByLabel("Slide (image path)").fill(imagePath);
  await job.getByLabel("Branch").fill(branch);
  await job.getByLabel("Job id").press("Tab"); // fires change: dependency boxes follow the ids
  for (const dep of dependsOn) await job.locator(".deps-group").getByLabel(dep).check();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (msg) => {
    if (msg.type() === "error" && !allowNetworkErrors) consoleErrors.push(msg.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(`pageerror: ${error.message}`));

  try {
    // ------------------------------------------------------------ sign in
    await page.goto(`${BASE}/`);
    await page.waitForURL(/#\/signin$/);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await shot(page, "01-sign-in");
    await page.getByLabel("User id").fill("not valid!");
    await page.getByRole("button", { name: "Sign in" }).click();
    check("sign-in refuses an unsafe user id", (await page.locator(".field-error").innerText()).includes("letters"));
    await signIn(page, ALICE);
    await page.getByText("You have no workflows yet.").waitFor();
    check("a new user sees an empty workflow list", true);

    // ------------------------------------------------------------ create (form)
    await page.getByRole("link", { name: "New workflow" }).first().click();
    await page.getByRole("heading", { name: "New workflow" }).waitFor();
    await page.getByText(/Slides must lie inside/).waitFor();
    await page.getByLabel("Workflow name").fill("ui-demo");
    await fillJob(page, 0, { jobId: "mask", jobType: "tissue_mask", imagePath: SLIDE, branch: "main" });
    await page.getByRole("button", { name: "Add job" }).click();
    await fillJob(page, 1, { jobId: "segment", jobType: "cell_segmentation", imagePath: SLIDE, branch: "cells", dependsOn: ["mask"] });
    await shot(page, "02-create-form");
    // the JSON tab shows the same request, with proto field names
    await page.getByRole("tab", { name: "JSON" }).click();
    const json = JSON.parse(await page.getByLabel("Workflow as JSON").inputValue());
    check(
      "the JSON editor mirrors the form",
      json.jobs.length === 2 && json.jobs[1].depends_on[0] === "mask" && json.jobs[1].job_type === "cell_segmentation",
      JSON.stringify(json).slice(0, 120),
    );
    await page.getByRole("tab", { name: "Form" }).click();
    await page.getByRole("button", { name: "Create workflow" }).click();
    await page.waitForURL(/#\/workflows\/[0-9a-f-]+$/);
    const workflowUrl = page.url();
    const workflowId = workflowUrl.split("/").pop();
    await page.locator("svg.dag").waitFor();
    const lanes = await page.locator("svg.dag .dag-lane-name").evaluateAll((els) => els.map((e) => e.textContent));
    check("the DAG has one lane per branch", lanes.join(",") === "main,cells", lanes.join(","));
    await shot(page, "03-workflow-running");

    // ------------------------------------------------------------ live progress
    const seen = new Map(); // job -> set of progress values
    const deadline = Date.now() + RUN_TIMEOUT;
    let states = [];
    while (Date.now() < deadline) {
      const snapshot = await page.locator("[data-testid=job-table] tbody tr").evaluateAll((rows) =>
        rows.map((r) => {
          const bar = r.querySelector("progress");
          return { job: r.dataset.jobId, state: r.dataset.state, value: Number(bar.value), max: Number(bar.max) };
        }),
      );
      for (const row of snapshot) {
        if (!seen.has(row.job)) seen.set(row.job, new Set());
        seen.get(row.job).add(`${row.value}/${row.max}`);
      }
      states = snapshot.map((r) => r.state);
      if (states.some((s) => s === "FAILED" || s === "UPSTREAM FAILED" || s === "CANCELLED")) break;
      if (snapshot.length && snapshot.every((r) => r.state === "SUCCEEDED" && r.value >= r.max && r.max > 0)) break;
      await page.waitForTimeout(400);
    }
    const segSeen = [...(seen.get("segment") ?? [])];
    check("every job reached SUCCEEDED live", states.every((s) => s === "SUCCEEDED"), states.join(","));
    check(
      "the segmentation progress bar moved to done",
      segSeen.length >= 2 && segSeen.some((v) => v.split("/")[0] === v.split("/")[1] && v.split("/")[1] !== "0"),
      segSeen.join(" "),
    );
    await page.locator("[data-testid=workflow-state] [data-state=SUCCEEDED]").waitFor();
    await shot(page, "04-workflow-done");

    await page.getByRole("link", { name: "Workflows", exact: true }).click();
    await page.locator(`tr[data-workflow-id="${workflowId}"] [data-state=SUCCEEDED]`).waitFor();
    await shot(page, "05-workflows-list");
    check("the list shows the workflow SUCCEEDED", true);

    // ------------------------------------------------------------ results + viewer
    await page.goto(workflowUrl);
    await page.getByRole("link", { name: "Results of segment" }).click();
    await page.getByTestId("cell-count").waitFor();
    const cells = Number((await page.getByTestId("cell-count").innerText()).replace(/[^0-9]/g, ""));
    // REQUIRE_CELLS=0 lets a run continue when the model finds nothing (debugging only).
    const requireCells = process.env.REQUIRE_CELLS !== "0";
    check("the results show a cell count", cells > 0 || !requireCells, String(cells));
    if (cells > 0) check("the area histogram is drawn", (await page.locator("[data-testid=area-histogram] rect.bar-rect").count()) > 0);
    const viewer = page.getByTestId("slide-viewer");
    await page.locator("[data-testid=slide-viewer][data-loaded=true]").waitFor({ timeout: 60_000 });
    const zoomedOut = cells > 5000 ? /drawn as dots/ : /cell outlines loaded|drawn as dots/;
    await page.getByTestId("viewer-status").filter({ hasText: zoomedOut }).waitFor({ timeout: 30_000 });
    if (cells > 5000) check("zoomed out, the many cells are drawn as dots", true, await page.getByTestId("viewer-status").innerText());
    await page.waitForTimeout(500);
    const withCells = await viewer.screenshot({ path: join(OUT, "06-viewer-cells.png") });
    await page.getByLabel("Cell outlines").uncheck();
    await page.waitForTimeout(400);
    const bare = await viewer.screenshot({ path: join(OUT, "07-viewer-bare.png") });
    const cellDiff = await pixelDiff(page, withCells, bare);
    check("the cell overlay changes the picture", cellDiff.diff > 200 || cells === 0, `${cellDiff.diff} of ${cellDiff.total} px differ`);
    await page.getByLabel("Tissue mask").check({ timeout: 30_000 });
    await page.waitForTimeout(400);
    const withMask = await viewer.screenshot({ path: join(OUT, "08-viewer-mask.png") });
    const maskDiff = await pixelDiff(page, withMask, bare);
    check("the tissue-mask overlay changes the picture", maskDiff.diff > 200, `${maskDiff.diff} of ${maskDiff.total} px differ`);
    await page.getByLabel("Cell outlines").check();
    // zoom in with the keyboard-accessible buttons; outlines are redrawn from ListCells
    // Zoom in with the keyboard-accessible button (x1.5 a click) until outlines replace the dots.
    const outlines = page.getByTestId("viewer-status").filter({ hasText: /cell outlines loaded/ });
    for (let click = 0; click < (cells > 0 ? 8 : 2); click += 1) {
      await page.getByRole("button", { name: "Zoom in" }).click();
      await page.waitForTimeout(1200);
      if (click >= 1 && (await outlines.count()) > 0) break;
    }
    if (cells > 0) {
      await outlines.waitFor({ timeout: 30_000 });
      check("zoomed in, cell outlines are fetched for the viewport", true, await page.getByTestId("viewer-status").innerText());
      await page.waitForTimeout(500);
      await viewer.screenshot({ path: join(OUT, "08b-viewer-outlines.png") });
    }
    await shot(page, "09-job-results");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download GeoJSON" }).click(),
    ]);
    const geojsonPath = join(OUT, "download.geojson");
    await download.saveAs(geojsonPath);
    const geojson = JSON.parse(readFileSync(geojsonPath, "utf8"));
    check(
      "GeoJSON downloads through the results stream",
      geojson.type === "FeatureCollection" && geojson.features.length === cells,
      `${geojson.features?.length} features`,
    );
    const [jsonDownload] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download JSON" }).click(),
    ]);
    check("JSON downloads with a sensible name", jsonDownload.suggestedFilename().endsWith("segment.json"), jsonDownload.suggestedFilename());

    // ------------------------------------------------------------ a bad workflow
    await page.goto(`${BASE}/#/new`);
    await page.getByLabel("Workflow name").fill("bad-one");
    await fillJob(page, 0, { jobId: "seg", jobType: "cell_segmentation", imagePath: "/etc/passwd", branch: "main" });
    await page.getByRole("button", { name: "Create workflow" }).click();
    const imageError = page.locator("fieldset.job").nth(0).locator(".field-error[data-field^='jobs[0].image_path']");
    await imageError.waitFor();
    check("a path outside the slide roots is shown on the image path field", (await imageError.innerText()).length > 0, await imageError.innerText());
    check(
      "the image path input is marked invalid",
      (await page.locator("fieldset.job").nth(0).getByLabel("Slide (image path)").getAttribute("aria-invalid")) === "true",
    );
    await shot(page, "10-create-error-form");
    // the same through the JSON editor: an unknown dependency
    await page.getByRole("tab", { name: "JSON" }).click();
    await page.getByLabel("Workflow as JSON").fill(
      JSON.stringify({ name: "bad-json", jobs: [{ job_id: "a", job_type: "tissue_mask", image_path: SLIDE, depends_on: ["ghost"] }] }, null, 2),
    );
    await page.getByRole("button", { name: "Create workflow" }).click();
    const depError = page.locator("#panel-json li[data-field^='jobs[0].depends_on']");
    await depError.waitFor();
    check("an unknown dependency is named with its field in the JSON editor", true, await depError.innerText());
    await shot(page, "11-create-error-json");
    await page.getByRole("tab", { name: "Form" }).click();
    const depFieldError = page.locator("fieldset.job").nth(0).locator(".deps-group .field-error");
    check("…and on the form's dependency field", (await depFieldError.innerText()).length > 0, await depFieldError.innerText());

    // ------------------------------------------------------------ monitoring + docs
    await page.getByRole("link", { name: "Monitoring" }).click();
    await page.getByTestId("active-users").waitFor();
    await page.getByTestId("health-status").waitFor();
    check("monitoring shows active users against the limit", /\d+ \/ \d+/.test(await page.getByTestId("active-users").innerText()));
    await shot(page, "12-monitoring");

    // ------------------------------------------------------------ keyboard
    await page.goto(`${BASE}/#/workflows`);
    await page.reload();
    await page.locator("[data-testid=workflow-table]").waitFor();
    await page.keyboard.press("Tab"); // skip link
    const skip = await page.evaluate(() => document.activeElement?.textContent);
    check("the first Tab reaches the skip link", skip === "Skip to content", String(skip));
    await page.keyboard.press("Enter");
    await page.keyboard.press("Tab");
    const afterSkip = await page.evaluate(() => document.activeElement?.closest("main") !== null);
    check("…which jumps past the navigation into the page", afterSkip);
    // the workflow is reachable and openable with the keyboard alone
    await page.locator(`tr[data-workflow-id="${workflowId}"] a`).first().focus();
    // The list is rebuilt whenever it changes (here: a workflow submitted elsewhere); the
    // keyboard user's place must survive that.
    const rowsBefore = await page.locator("tr[data-workflow-id]").count();
    const submitted = await page.evaluate(
      async ([user, slide]) => {
        const reply = await fetch("/api/workflows", {
          method: "POST",
          headers: { "X-User-ID": user, "Content-Type": "application/json" },
          body: JSON.stringify({ name: "from-elsewhere", jobs: [{ job_id: "mask", job_type: "tissue_mask", image_path: slide }] }),
        });
        return reply.status;
      },
      [ALICE, SLIDE],
    );
    await page.waitForFunction((n) => document.querySelectorAll("tr[data-workflow-id]").length > n, rowsBefore);
    const focusedRow = await page.evaluate(() => document.activeElement?.closest("tr")?.getAttribute("data-workflow-id"));
    check("the focused workflow keeps focus while the list updates", submitted === 200 && focusedRow === workflowId, `${submitted} ${focusedRow}`);
    await page.keyboard.press("Enter");
    await page.waitForURL(/#\/workflows\/[0-9a-f-]+$/);
    // The new view renders after the URL changes; give it a moment to take focus.
    await page.waitForFunction(() => document.activeElement?.tagName === "H1", null, { timeout: 5_000 }).catch(() => {});
    const focusedHeading = await page.evaluate(() => document.activeElement?.tagName);
    check("in-app navigation moves focus to the new page's heading", focusedHeading === "H1", String(focusedHeading));
    // On any page the skip link moves focus past the navigation and stays on that page.
    const pageUrl = page.url();
    await page.locator(".skip-link").focus();
    await page.keyboard.press("Enter");
    const skipped = await page.evaluate(() => document.activeElement?.id);
    check("the skip link keeps the page it is on", page.url() === pageUrl && skipped === "main", `${page.url()} ${skipped}`);

    // ------------------------------------------------------------ gateway outage
    const stop = process.env.STOP_GATEWAY_CMD;
    const start = process.env.START_GATEWAY_CMD;
    allowNetworkErrors = true;
    if (stop && start) {
      execSync(stop, { stdio: "inherit" });
    } else {
      await page.route(/\/slidelane\.v1\./, (route) => route.abort("connectionrefused"));
    }
    await page.locator("#banner:not([hidden])").waitFor({ timeout: 30_000 });
    const bannerText = await page.locator("#banner").innerText();
    check("a stopped gateway shows a banner", /Connection lost/.test(bannerText), bannerText.slice(0, 100));
    await shot(page, "13-gateway-down");
    if (stop && start) {
      execSync(start, { stdio: "inherit" });
    } else {
      await page.unroute(/\/slidelane\.v1\./);
    }
    await page.locator("#banner").waitFor({ state: "hidden", timeout: 90_000 });
    check("the banner goes away by itself when the gateway is back", true);
    await page.waitForTimeout(1500);
    allowNetworkErrors = false;

    // ------------------------------------------------------------ another user
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(page, BOB);
    await page.getByText("You have no workflows yet.").waitFor();
    check("another user sees none of the first user's workflows", (await page.locator(`tr[data-workflow-id="${workflowId}"]`).count()) === 0);
    await page.goto(workflowUrl);
    await page.getByText("No such workflow").waitFor();
    check("…and cannot open them by URL (not found, no existence leak)", true);
    await shot(page, "14-other-user");
    await page.goto(`${BASE}/#/monitor`);
    await page.getByTestId("active-users").waitFor();
    check("…nor sees their failures or lanes", (await page.getByText("No jobs waiting or running in your lanes.").count()) === 1);

    // ------------------------------------------------------------ REST docs
    await page.goto(`${BASE}/docs/`);
    await page.locator(".swagger-ui .info .title").waitFor({ timeout: 30_000 });
    const ops = await page.locator(".swagger-ui .opblock").count();
    check("Swagger UI renders the generated OpenAPI document", ops >= 10, `${ops} operations`);
    await shot(page, "15-api-docs");

    check("no console errors", consoleErrors.length === 0, consoleErrors.slice(0, 5).join(" | "));
  } catch (error) {
    await shot(page, "zz-failure").catch(() => {});
    console.log(`console errors so far: ${consoleErrors.join(" | ")}`);
    console.log(`page: ${page.url()}\n${(await page.locator("body").innerText().catch(() => "")).slice(0, 600)}`);
    throw error;
  } finally {
    writeFileSync(join(OUT, "results.json"), JSON.stringify({ results, consoleErrors }, null, 2));
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(String(error?.stack ?? error));
    process.exit(1);
  },
);
