// Two browser contexts as two users of the demo client: they register,
// chat both ways (typing indicator and read ticks show), then make a video
// call that reaches RTCPeerConnection "connected" on both sides and hang up.
//
//   node chat_and_call.mjs BASE_URL ARTIFACT_DIR
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
  ],
});
const pages = [];
let failed = false;
try {
  const open = async (name) => {
    const context = await browser.newContext({ permissions: ["camera", "microphone"] });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (error) => console.error(`[${name}] page error: ${error.message}`));
    await page.goto(base);
    pages.push({ name, page });
    return page;
  };
  const register = async (page, phone, username) => {
    await page.fill("#phone", phone);
    await page.fill("#username", username);
    await page.fill("#password", "password123");
    await page.click("#register-button");
    await page.waitForSelector("#app:not([hidden])");
    await page.waitForFunction(() => window.sb.ws?.readyState === 1);
  };
  const alice = await open("alice");
  const bob = await open("bob");
  await register(alice, "13900000001", "alice");
  await register(bob, "13900000002", "bob");

  // Alice starts a chat with Bob by phone and writes.
  await alice.fill("#new-chat-phone", "13900000002");
  await alice.click("#new-chat-button");
  await alice.waitForFunction(() => window.sb.current !== null);
  await alice.fill("#text", "hello bob");
  await alice.click("#send");
  await alice.waitForSelector("#messages li.mine .tick");

  // Bob sees the chat with an unread badge, opens it, reads it.
  await bob.waitForSelector("#chats li .badge:not(:empty)");
  await bob.click("#chats li");
  // Each sees the other online.
  await alice.waitForSelector("#peer-dot.online");
  await bob.waitForSelector("#peer-dot.online");
  await bob.waitForSelector("#messages li:has-text('hello bob')");
  // Alice's tick turns to read.
  await alice.waitForSelector("#messages li.mine .tick.read");

  // Bob types: Alice sees the indicator; then Bob answers.
  await bob.type("#text", "hi alice", { delay: 30 });
  await alice.waitForSelector("#typing:not([hidden])");
  await bob.click("#send");
  await alice.waitForSelector("#messages li:has-text('hi alice')");
  await alice.waitForSelector("#typing", { state: "hidden" });
  await bob.waitForSelector("#messages li.mine .tick.read");
  console.log("chat: both ways, presence dots, typing indicator and read ticks shown");

  // A video call through the gateway's signalling.
  await alice.click("#video-call");
  await bob.waitForSelector("#accept-call:not([hidden])");
  await bob.click("#accept-call");
  for (const { page } of pages) {
    await page.waitForFunction(() => window.sb.pc?.connectionState === "connected", null, { timeout: 30_000 });
  }
  // Media really flows: the remote video has frames.
  for (const { page } of pages) {
    await page.waitForFunction(() => document.getElementById("remote-video").videoWidth > 0, null, { timeout: 15_000 });
  }
  console.log("call: RTCPeerConnection connected on both sides, remote video playing");
  await Promise.all(pages.map(({ name, page }) => page.screenshot({ path: `${artifacts}/${name}-in-call.png` })));

  await alice.click("#hangup");
  await bob.waitForFunction(() => window.sb.call === null && window.sb.lastCallEnd === "user_hangup");
  await alice.waitForSelector("#call", { state: "hidden" });
  await alice.waitForSelector("#messages li.system:has-text('video call: answered')");
  console.log("call: hang-up ended it on both sides and left a record");
  await Promise.all(pages.map(({ name, page }) => page.screenshot({ path: `${artifacts}/${name}-after.png` })));
} catch (error) {
  failed = true;
  console.error(`browser test failed: ${error.stack || error}`);
  await Promise.all(pages.map(({ name, page }) => page.screenshot({ path: `${artifacts}/${name}-failure.png` }).catch(() => {})));
} finally {
  await browser.close();
}
console.log(failed ? "browser: 0 passed, 1 failed" : "browser: 1 passed, 0 failed");
process.exit(failed ? 1 : 0);
