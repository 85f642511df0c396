/**
 * Loaded into every test file's process by .taprc (`node-arg: --import`),
 * after tap's own @tapjs/processinfo. That module hooks every spawn (through
 * process-on-spawn's listeners) so that each child process, and each of
 * theirs, loads it too (NODE_OPTIONS=--import): it records the process tree
 * for coverage, which .taprc turns off. For the berth processes the tests
 * start (nats-servers aside, every meta, node, mount and CLI run) it cost
 * about 0.35 s of CPU per start (`berth status` with no cluster: 0.26-0.33 s
 * without it, 0.62-0.67 s with it), a source-map scan and a JSON file at
 * each exit, and they ran with a module loader and exit-signal handlers that
 * production does not have. The listeners are removed here, and the
 * `--import` tap put in this process's NODE_OPTIONS (which children
 * inherit), so the children start with the environment the test gives them.
 * Nothing else changes: the test file's own process is still recorded.
 *
 * process-on-spawn keeps its state on a global (its singleton); if a tap
 * release keeps it elsewhere, this finds nothing and changes nothing.
 */
const key = Symbol.for('process-on-spawn@*:singletonId')
const state = (globalThis as Record<symbol, unknown>)[key] as { listeners?: unknown[] } | undefined
if (Array.isArray(state?.listeners)) state.listeners.length = 0
// tap's runner started this process with NODE_OPTIONS="--import=file:///…/@tapjs/processinfo/…"
const options = process.env.NODE_OPTIONS
if (options !== undefined) {
  const rest = options.replace(/"?--(?:import|loader)=[^\s"]*@tapjs\/processinfo[^\s"]*"?/g, '').trim()
  if (rest) process.env.NODE_OPTIONS = rest
  else delete process.env.NODE_OPTIONS
}
