/**
 * `berth node drain|undrain|decommission|forget ID`: steer a data node's life
 * (meta/node-admin.ts draws the state machine). `berth node` with any other
 * first argument runs a data node.
 */
import { parseArgs } from 'node:util'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'

export const NODE_ADMIN_ACTIONS = ['drain', 'undrain', 'decommission', 'forget'] as const
type Action = (typeof NODE_ADMIN_ACTIONS)[number]

const HELP = `usage: berth node drain|undrain|decommission|forget ID [--json] [connection options]
  drain         stop placing on ID at once and move every block off it (see berth status)
  undrain       take ID back into service
  decommission  forget a drained node (refused while it holds blocks)
  forget        forget a dead node that will not return (refused until its blocks are re-protected)
${CONNECTION_HELP}
  --json               machine-readable output
`

export function isNodeAdmin(argv: string[]): boolean {
  return (NODE_ADMIN_ACTIONS as readonly string[]).includes(argv[0] ?? '')
}

export async function run(argv: string[]): Promise<void> {
  const action = argv[0] as Action
  const { values, positionals } = parseArgs({
    args: argv.slice(1),
    allowPositionals: true,
    options: { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
  })
  if (values.help || positionals.length !== 1) {
    process.stdout.write(HELP)
    if (!values.help) process.exitCode = 2
    return
  }
  const { nc, meta } = await connectClient(values, 'berth-node-admin')
  try {
    const r = await meta.call('nodeAdmin', { node: positionals[0]!, action })
    process.stdout.write(values.json ? JSON.stringify(r, null, 2) + '\n' : `node ${r.node}: ${r.admin ?? 'in service'}, ${r.blocks} block(s) on it\n`)
  } finally {
    await nc.close()
  }
}
