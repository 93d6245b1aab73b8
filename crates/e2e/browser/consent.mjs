// End-to-end check of the authority's sign-in and consent pages in headless Chromium.
//
// Started by crates/e2e/tests/external/browser_consent.rs with a JSON config as the only argument:
//   { "url1": "...", "url2": "...", "username": "...", "password": "...",
//     "names": ["..."], "redirect_prefix": "http://127.0.0.1:PORT/cb",
//     "already": "...", "fresh": "...", "screenshot": "/path/consent.png",
//     "screenshot2": "/path/consent-incremental.png", "screenshot_phone": "/path/consent-phone.png" }
// Pass 1 signs in, checks every party name on the consent page, takes a screenshot and approves.
// Pass 2 (include_granted_scopes=true, a new scope) reuses the session: the page must list the
// earlier scope under "Already granted" and the new one under "New". Each landing URL is printed
// as one JSON line; the Rust test completes the code exchanges.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const config = JSON.parse(process.argv[2])
const fail = (message) => {
  console.error(`FAIL: ${message}`)
  process.exitCode = 1
  throw new Error(message)
}

const profile = mkdtempSync(join(tmpdir(), 'chaingate-chromium-'))
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 720, height: 900 },
  timeout: 20000,
})
try {
  const page = context.pages()[0] ?? await context.newPage()
  page.setDefaultTimeout(10000)

  // Pass 1: sign in, see every party, approve.
  await page.goto(config.url1)
  if (!(await page.title()).startsWith('Sign in')) fail(`expected the sign-in page, got "${await page.title()}"`)
  await page.getByLabel('Username').fill(config.username)
  await page.getByLabel('Password').fill(config.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('button', { name: 'Allow' }).waitFor()
  const text = await page.locator('main').innerText()
  for (const name of config.names) {
    if (!text.includes(name)) fail(`consent page does not name "${name}"`)
  }
  const heading = await page.locator('h1').innerText()
  if (!heading.includes(config.names[0])) fail(`the end-user application is not the headline: "${heading}"`)
  // Logos load (same-page images from the test's loopback server) and have alt text.
  const logos = await page.locator('img').evaluateAll((imgs) => imgs.map((i) => ({ alt: i.alt, ok: i.complete && i.naturalWidth > 0 })))
  if (logos.length === 0 || logos.some((l) => !l.alt || !l.ok)) fail(`logos: ${JSON.stringify(logos)}`)
  await page.screenshot({ path: config.screenshot, fullPage: true })
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(config.redirect_prefix)),
    page.getByRole('button', { name: 'Allow' }).click(),
  ])
  console.log(JSON.stringify({ pass: 1, url: page.url() }))

  // Pass 2: incremental authorization in the same browser session (no sign-in again).
  await page.goto(config.url2)
  await page.getByRole('button', { name: 'Allow' }).waitFor()
  const already = await page.locator('h3:text-is("Already granted") + ul').innerText()
  const fresh = await page.locator('h3:text-is("New") + ul').innerText()
  if (!already.includes(config.already)) fail(`"Already granted" lists "${already}", expected ${config.already}`)
  if (!fresh.includes(config.fresh) || fresh.includes(config.already)) fail(`"New" lists "${fresh}"`)
  await page.screenshot({ path: config.screenshot2, fullPage: true })
  // Readable on a phone: no horizontal scrolling at 390 px.
  await page.setViewportSize({ width: 390, height: 844 })
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  if (overflow > 0) fail(`the page scrolls sideways on a phone by ${overflow}px`)
  await page.screenshot({ path: config.screenshot_phone, fullPage: true })
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(config.redirect_prefix)),
    page.getByRole('button', { name: 'Allow' }).click(),
  ])
  console.log(JSON.stringify({ pass: 2, url: page.url() }))
  console.log('browser checks passed')
} finally {
  await context.close()
  rmSync(profile, { recursive: true, force: true })
}
