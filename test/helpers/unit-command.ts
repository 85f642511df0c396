/**
 * The command line a shipped systemd service unit runs, as systemd would
 * build it: Environment= lines, then the EnvironmentFile (its values win),
 * then ExecStart= with `${VAR}` replaced as one word and a whole-word `$VAR`
 * split on whitespace (empty: no word). Tests run berth with exactly what
 * tools/systemd/ ships; `paths` maps the unit's absolute paths (/etc/berth,
 * /var/lib/berth, /usr/local/bin/berth) to the test's own.
 */
import { readFileSync } from 'node:fs'
import { readCredentialsFile } from '../../common/credentials'

export interface UnitCommand {
  /** argv[0] and the rest, paths mapped. */
  argv: string[]
  /** The environment systemd would give the process (Environment= and EnvironmentFile=). */
  env: Record<string, string>
}

/** The values of every `Key=` line of the unit's [Service] section, in order. */
export function unitValues(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1).trim())
}

export function unitCommand(unitPath: string, paths: (p: string) => string): UnitCommand {
  const text = readFileSync(unitPath, 'utf8')
  const env: Record<string, string> = {}
  for (const line of unitValues(text, 'Environment')) {
    const eq = line.indexOf('=')
    env[line.slice(0, eq)] = line.slice(eq + 1)
  }
  for (const file of unitValues(text, 'EnvironmentFile')) {
    const optional = file.startsWith('-')
    try {
      Object.assign(env, readCredentialsFile(paths(optional ? file.slice(1) : file)))
    } catch (err) {
      if (!optional) throw err
    }
  }
  const exec = unitValues(text, 'ExecStart')
  if (exec.length !== 1) throw new Error(`${unitPath}: expected one ExecStart=, found ${exec.length}`)
  const argv: string[] = []
  for (const word of exec[0]!.split(/\s+/)) {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word)
    if (whole) {
      argv.push(...(env[whole[1]!] ?? '').split(/\s+/).filter(Boolean))
      continue
    }
    argv.push(paths(word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => env[k] ?? '')))
  }
  return { argv, env }
}
