/**
 * The piece arithmetic of verified range reads (common/verified-range.ts): which
 * 64 KiB pieces cover a range, and that a flipped byte, a short or long body
 * and a cut last piece all fail the check while the true bytes pass; and which
 * check a whole block gets (common/block-client.ts wholeBlockCheck).
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { pieceSums, SUM_PIECE } from '../common/checksums'
import { coveringPieces, verifyPieces } from '../common/verified-range'
import { wholeBlockCheck } from '../common/block-client'
import { blockName } from '../common/block-hash'
import { OFF_THREAD_MIN, pieceSumsAsync, sumsImpl, sumsOffThread } from '../common/async-checksums'

const P = SUM_PIECE
// 3 full pieces and a last one of 1000 bytes
const block = randomBytes(3 * P + 1000)
const sums = pieceSums(block)
const fetch = (span: { start: number; end: number }) => block.subarray(span.start, span.end + 1)

t.test('covering pieces', async (t) => {
  t.same(coveringPieces(sums, 0, 4096), { first: 0, last: 0, start: 0, end: P - 1 })
  t.same(coveringPieces(sums, P - 10, 20), { first: 0, last: 1, start: 0, end: 2 * P - 1 }, 'a range across a boundary takes both pieces')
  t.same(coveringPieces(sums, 3 * P + 10, 4096), { first: 3, last: 3, start: 3 * P, end: 4 * P - 1 }, 'the last piece is asked up to a boundary; the node clips it')
  t.same(coveringPieces(sums, 2 * P, 10 * P), { first: 2, last: 3, start: 2 * P, end: 4 * P - 1 }, 'a range past the end stops at the last piece')
  t.equal(coveringPieces(sums, 4 * P, 10), null, 'nothing there')
  t.equal(coveringPieces(sums, 0, 0), null)
})

t.test('verification', async (t) => {
  for (const [off, len] of [[0, 4096], [P - 10, 20], [3 * P + 10, 500], [0, block.length]] as const) {
    const span = coveringPieces(sums, off, len)!
    t.equal(verifyPieces(sums, span, fetch(span)), null, `true bytes at ${off}+${len} pass`)
  }
  const span = coveringPieces(sums, P + 5, 100)!
  const flipped = Buffer.from(fetch(span))
  flipped[7] = flipped[7]! ^ 1
  t.match(verifyPieces(sums, span, flipped), /checksum/, 'a flipped byte fails')
  t.match(verifyPieces(sums, span, fetch(span).subarray(0, P - 1)), /short/, 'a short full piece fails')
  t.match(verifyPieces(sums, span, Buffer.alloc(0)), /short/, 'an empty body fails')
  t.match(verifyPieces(sums, span, Buffer.concat([fetch(span), Buffer.alloc(1)])), /long/, 'extra bytes fail')
  const last = coveringPieces(sums, 3 * P, 10)!
  t.match(verifyPieces(sums, last, fetch(last).subarray(0, 999)), /checksum/, 'a cut last piece fails')
  t.match(verifyPieces(sums, last, Buffer.alloc(1000)), /checksum/, 'zeros fail')
})

t.test('a whole block with sums is checked by them, not hashed: the name only decides when they disagree', async (t) => {
  const name = blockName(block, 'blake3')
  // a name the bytes do not hash to: only a check that never hashed can pass it
  const notItsName = 'f'.repeat(64)
  t.equal(await wholeBlockCheck(notItsName, sums)(block), null, 'sums agree: accepted without hashing')
  const flipped = Buffer.from(block)
  flipped[P + 5] = flipped[P + 5]! ^ 1
  t.not(await wholeBlockCheck(notItsName, sums)(flipped), null, 'a piece disagrees and the bytes do not hash to the name: refused')
  const wrong = Buffer.from(sums)
  wrong[0] = wrong[0]! ^ 1
  t.equal(await wholeBlockCheck(name, wrong)(block), null, 'sums recorded wrong, bytes that hash to the name: accepted')
  t.match(await wholeBlockCheck(notItsName, undefined)(block), /not named by its bytes/, 'no sums: the name decides')
  t.equal(await wholeBlockCheck(name, undefined)(block), null, 'no sums, a BLAKE3 name: accepted')
  t.equal(await wholeBlockCheck(blockName(block, 'sha256'), undefined)(block), null, 'no sums, a SHA-256 name: accepted')
  t.equal(await wholeBlockCheck(blockName(block, 'sha256'), wrong)(block), null, 'sums recorded wrong, a SHA-256 name: accepted')
})

t.test('sums off the event loop: the same bytes as pieceSums, and a 4 MiB block checked by them', async (t) => {
  t.ok(sumsOffThread(), 'the addon is built (build/Release/berth_sums.node) and this node exports zlib')
  const hasLibdeflate = spawnSync('sh', ['-c', 'ldconfig -p | grep -q libdeflate.so.0']).status === 0
  t.equal(sumsImpl(), hasLibdeflate ? 'libdeflate' : 'zlib', `libdeflate.so.0 ${hasLibdeflate ? 'present: its crc32' : 'absent: zlib\'s'}`)
  // the other implementation, in a process that asks for zlib's: the same sums
  const other = spawnSync(process.execPath, ['-e', `
    const { pieceSumsAsync, sumsImpl } = require(${JSON.stringify(join(__dirname, '..', 'common', 'async-checksums.js'))})
    const bytes = Buffer.alloc(4 << 20); for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24
    pieceSumsAsync(bytes).then((s) => console.log(sumsImpl(), Buffer.from(s).toString('hex')))`], { env: { ...process.env, BERTH_CRC32: 'zlib' }, encoding: 'utf8' })
  const bytes = Buffer.alloc(4 << 20)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24
  t.equal(other.stdout.trim(), `zlib ${Buffer.from(await pieceSumsAsync(bytes)).toString('hex')}`, "BERTH_CRC32=zlib: zlib's crc32, the same 64 sums")
  for (const n of [1, OFF_THREAD_MIN - 1, OFF_THREAD_MIN, 4 * 1024 * 1024, 4 * 1024 * 1024 - 3, 10 * P + 1]) {
    const bytes = randomBytes(n)
    t.same(Buffer.from(await pieceSumsAsync(bytes)), Buffer.from(pieceSums(bytes)), `${n} bytes`)
  }
  const big = randomBytes(4 * 1024 * 1024)
  const bigSums = pieceSums(big)
  const notItsName = 'f'.repeat(64)
  t.equal(await wholeBlockCheck(notItsName, bigSums)(big), null, 'good bytes: accepted by their sums')
  const flipped = Buffer.from(big)
  flipped[3 * 1024 * 1024 + 17] = flipped[3 * 1024 * 1024 + 17]! ^ 1
  t.match(await wholeBlockCheck(notItsName, bigSums)(flipped), /checksum: piece 48/, 'a flipped byte: refused, naming its piece')
  t.match(await wholeBlockCheck(notItsName, bigSums)(big.subarray(0, big.length - P)), /short/, 'a body a piece short: refused')
  t.match(await wholeBlockCheck(notItsName, bigSums)(Buffer.concat([big, Buffer.alloc(1)])), /long/, 'a byte too many: refused')
  t.match(await wholeBlockCheck(notItsName, bigSums)(big.subarray(0, big.length - 1)), /checksum/, 'a cut last piece: refused')
  t.equal(await wholeBlockCheck(blockName(big, 'sha256'), Buffer.alloc(bigSums.length))(big), null, 'sums recorded wrong, bytes that hash to the name: accepted')
})
