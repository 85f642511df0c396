/**
 * A real headless Chromium (Debian's `chromium`, installed by tools/install-deps
 * through .ci/run) driven by playwright-core, for tests of pages berth serves.
 * Each call gets a fresh profile folder in the test's dir and is closed at
 * teardown. Without /usr/bin/chromium the test fails, unless
 * BERTH_SKIP_BROWSER=1 says to skip it (then this returns null).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import type { Test } from 'tap'

export const CHROMIUM = '/usr/bin/chromium'

/** Test machines reach nothing but loopback: Chromium must not try (updates, sync, background fetches, QUIC). */
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export async function launchBrowser(t: Test, viewport = { width: 1300, height: 1000 }): Promise<BrowserContext | null> {
  if (!existsSync(CHROMIUM)) {
    if (process.env.BERTH_SKIP_BROWSER === '1') {
      t.pass('the browser part', { skip: `${CHROMIUM} is missing and BERTH_SKIP_BROWSER=1` })
      return null
    }
    t.fail(`${CHROMIUM} is missing: apt-get install chromium (tools/install-deps does it with BERTH_EXTRA_PACKAGES=chromium), or set BERTH_SKIP_BROWSER=1`)
    return null
  }
  // playwright takes the profile folder as an argument of its own (it refuses --user-data-dir in args)
  const profile = mkdtempSync(join(tmpdir(), 'berth-chromium-'))
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport, timeout: 90_000 })
  t.teardown(async () => {
    await ctx.close().catch(() => undefined)
    rmSync(profile, { recursive: true, force: true })
  })
  return ctx
}
