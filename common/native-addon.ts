/**
 * berth's own small addons, built by node-gyp at `npm install` into
 * build/Release (binding.gyp). The FUSE binding must be there
 * (client/fuse-binding.ts); the others are optional: a process without one
 * does the same work a slower way, so loading one never throws.
 */
import { join } from 'node:path'

/** build/Release/<file>, from dist/<folder>/ where the compiled modules run. */
export function addonPath(file: string): string {
  return join(__dirname, '..', '..', 'build', 'Release', file)
}

/**
 * The addon in build/Release/<file> when it loads and `usable` accepts what
 * it exports; otherwise null (not built, or built without what it needs).
 */
export function optionalAddon<T>(file: string, usable: (mod: Partial<T>) => boolean): T | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(addonPath(file)) as Partial<T>
    return usable(mod) ? (mod as T) : null
  } catch {
    return null
  }
}
