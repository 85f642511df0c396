#!/usr/local/bin/node
// Test-only `wget -q -O /dev/null URL` for the nats stand-in image's healthcheck:
// exit 0 on a 2xx answer, 1 otherwise (as wget does for an HTTP error).
const url = process.argv.slice(2).find((a) => /^https?:\/\//.test(a))
if (!url) {
  console.error('wget stand-in: usage: wget -q -O /dev/null URL')
  process.exit(2)
}
fetch(url, { signal: AbortSignal.timeout(5000) }).then(
  (res) => process.exit(res.ok ? 0 : 1),
  () => process.exit(1),
)
