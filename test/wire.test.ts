import t from 'tap'
import { BerthError, fsError, toErrno } from '../common/errors'
import { validateName } from '../common/names'
import { metaRequests } from '../common/protocol'
import { decode, encode, errorReply, parseBody, unwrap } from '../common/wire'

t.test('envelope round trip keeps the errno code', async (t) => {
  const reply = errorReply(new BerthError('ENOTEMPTY', 'dir not empty'))
  t.throws(() => unwrap(reply), { code: 'ENOTEMPTY', message: 'dir not empty' })
  t.equal(toErrno({ code: 'ENOTEMPTY' }), -39)
  t.equal(toErrno(new Error('boom')), -5, 'unknown errors are EIO')
})

t.test('parseBody refuses garbage, wrong types and oversize bodies', async (t) => {
  t.throws(() => parseBody(metaRequests.getattr, Buffer.from([0xc1, 0xff, 0x00])), { code: 'EBADMSG' })
  t.throws(() => parseBody(metaRequests.getattr, encode({ ino: 'one' })), { code: 'EBADMSG' })
  t.throws(() => parseBody(metaRequests.getattr, encode({ ino: 0 })), { code: 'EBADMSG' })
  t.throws(() => parseBody(metaRequests.getattr, Buffer.alloc(2 * 1024 * 1024)), { code: 'EMSGSIZE' })
  t.same(parseBody(metaRequests.getattr, encode({ ino: 7 })), { ino: 7 })
})

t.test('binary values survive the codec', async (t) => {
  const value = Buffer.from([0, 1, 2, 255])
  const out = decode(encode({ value })) as { value: Uint8Array }
  t.same(Buffer.from(out.value), value)
})

t.test('names', async (t) => {
  t.throws(() => validateName('a/b'), { code: 'EINVAL' })
  t.throws(() => validateName('a\0b'), { code: 'EINVAL' })
  t.throws(() => validateName('x'.repeat(256)), { code: 'ENAMETOOLONG' })
  t.throws(() => validateName('é'.repeat(128)), { code: 'ENAMETOOLONG' }, '256 bytes of UTF-8')
  t.equal(validateName('x'.repeat(255)), 'x'.repeat(255))
})

t.test('errno answers are built without a stack trace (they are answers, not faults); EIO keeps its stack', async (t) => {
  const answer = fsError('ENOENT', 'no entry "x" in 1')
  t.equal(answer.code, 'ENOENT')
  t.equal(answer.stack, 'BerthError: no entry "x" in 1', 'only the header line')
  t.match(fsError('EIO', 'lost').stack ?? '', /\n\s+at /, 'EIO has frames')
  t.ok(Error.stackTraceLimit > 0, 'the limit is restored')
})
