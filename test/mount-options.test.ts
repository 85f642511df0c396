/**
 * `berth mount -o meta_cache_ttl=S` (client/config.ts): the metadata cache's
 * TTL in seconds, at least 1; 300 s by default with a meta that publishes its
 * forget-everything message when it starts serving, 30 s with one that does not.
 */
import t from 'tap'
import { HELP, metaCacheTtlMs, metaTtlMs, parseMountArgs } from '../client/config'
import { mountDevice } from '../client/kernel-readahead'

const parse = (...o: string[]) => parseMountArgs(['nats://127.0.0.1:4222', '/mnt/x', ...o.flatMap((x) => ['-o', x])], {})!

t.test('meta_cache_ttl: default, seconds, and what the mount then uses', async (t) => {
  t.equal(parse().metaTtlMs, null, 'not given: null (decided once meta said hello)')
  t.equal(metaTtlMs(parse(), true), 300_000, 'default with a meta that forgets on serve: 300 s')
  t.equal(metaTtlMs(parse(), false), 30_000, 'default with an older meta: 30 s')
  t.equal(parse('meta_cache_ttl=600').metaTtlMs, 600_000, '600 s')
  t.equal(parse('ro,meta_cache_ttl=1.5,attr_timeout=2').metaTtlMs, 1500, 'decimals, among other options')
  t.equal(metaTtlMs(parse('meta_cache_ttl=45'), false), 45_000, 'an explicit TTL is kept whatever meta says')
  t.equal(parse('meta_cache_ttl=86400').metaTtlMs, 86_400_000, 'a day at most')
  t.match(HELP, /meta_cache_ttl=S/, '`berth mount --help` lists it')
})

t.test('meta_cache_ttl: bad values are refused with the option and the range', async (t) => {
  for (const bad of ['0', '0.5', '-1', '', 'abc', 'NaN', 'Infinity', '86401', '1e9']) {
    t.throws(() => parse(`meta_cache_ttl=${bad}`), { code: 'EINVAL', message: /-o meta_cache_ttl: seconds from 1 to 86400 expected/ }, `"${bad}" refused`)
  }
  t.throws(() => parse('meta_cache_ttl'), { code: 'EINVAL' }, 'no value refused')
  t.equal(metaCacheTtlMs(undefined), null, 'absent: null')
})

t.test('reopen_cache_mb and local_locks: defaults, values, refusals', async (t) => {
  t.equal(parse().reopenCacheBytes, 64 * 1024 * 1024, 'kept chunk maps: 64 MiB by default')
  t.equal(parse('reopen_cache_mb=0').reopenCacheBytes, 0, '0 keeps none (every open asks meta)')
  t.equal(parse('reopen_cache_mb=8').reopenCacheBytes, 8 * 1024 * 1024)
  for (const bad of ['-1', 'x', '1.5', '']) t.throws(() => parse(`reopen_cache_mb=${bad}`), { code: 'EINVAL', message: /reopen_cache_mb/ }, `"${bad}" refused`)
  t.equal(parse().localLocks, false, 'locks across the cluster by default')
  t.equal(parse('local_locks').localLocks, true)
  t.match(HELP, /reopen_cache_mb=N/, '`berth mount --help` lists it')
  t.match(HELP, /local_locks/)
})

t.test('readahead_kb: the kernel readahead window a mount sets (client/kernel-readahead.ts)', async (t) => {
  t.equal(parse().readaheadKb, 1024, '1 MiB by default, the largest READ the mount takes')
  t.equal(parse('readahead_kb=0').readaheadKb, 0, '0 leaves the kernel\'s own')
  t.equal(parse('readahead_kb=8192').readaheadKb, 8192)
  for (const bad of ['-1', 'x', '1.5', '', '65537']) t.throws(() => parse(`readahead_kb=${bad}`), { code: 'EINVAL', message: /readahead_kb/ }, `"${bad}" refused`)
  t.match(HELP, /readahead_kb=N/, '`berth mount --help` lists it')
})

t.test('mountDevice: the FUSE mount\'s MAJOR:MINOR in mountinfo, escaped paths, the newest of stacked mounts', async (t) => {
  const info = [
    '22 1 0:21 / /proc rw,nosuid - proc proc rw',
    '60 22 0:40 / /tmp/a rw,nosuid,nodev - fuse.berth berth rw,user_id=0',
    '61 22 0:41 / /tmp/with\\040space rw - fuse.berth berth rw',
    '62 60 0:42 / /tmp/a rw - fuse.berth berth rw',
    '63 22 8:1 / /tmp/disk rw - ext4 /dev/sda1 rw',
  ].join('\n')
  t.equal(mountDevice(info, '/tmp/a'), '0:42', 'the last mount at the path')
  t.equal(mountDevice(info, '/tmp/with space'), '0:41', 'octal escapes undone')
  t.equal(mountDevice(info, '/tmp/disk'), null, 'not a FUSE mount')
  t.equal(mountDevice(info, '/tmp/none'), null)
})
