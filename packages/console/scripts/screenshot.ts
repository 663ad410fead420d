/**
 * Loads the console in headless Chromium (Debian's /usr/bin/chromium via playwright-core),
 * reports page errors and takes screenshots at 1280 px and 390 px.
 *
 * Usage: tsx scripts/screenshot.ts <url> <out-prefix> [wait-ms]
 * e.g.   tsx scripts/screenshot.ts http://127.0.0.1:4173/ui/ /tmp/console
 */
import { chromium } from "playwright-core";

const [url = "http://127.0.0.1:4173/ui/", prefix = "/tmp/console", waitMs = "2500"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const errors: string[] = [];
try {
  for (const width of [1280, 390]) {
    const page = await browser.newPage({ viewport: { width, height: width > 800 ? 900 : 800 } });
    page.on("pageerror", (e) => errors.push(`pageerror@${width}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") console.log(`console.${m.type()}@${width}: ${m.text()}`);
    });
    await page.goto(url);
    await page.waitForTimeout(Number(waitMs));
    const conn = await page.getByTestId("conn-state").textContent();
    console.log(`width ${width}: conn-state=${conn}`);
    await page.screenshot({ path: `${prefix}-${width}.png`, fullPage: true });
    await page.close();
  }
} finally {
  await browser.close();
}
if (errors.length > 0) {
  console.error(errors.join("\n"));
  process.exit(1);
}
console.log("no page errors");
