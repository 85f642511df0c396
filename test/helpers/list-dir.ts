/**
 * Every entry of a directory as meta lists it, page after page (readdir
 * answers at most a page per call, with a cursor to the next).
 */
import type { MetaClient } from '../../common/meta-client'
import type { MetaReplies } from '../../common/protocol'

export async function listDir(meta: Pick<MetaClient, 'call'>, ino: number): Promise<MetaReplies['readdir']['entries']> {
  const entries: MetaReplies['readdir']['entries'] = []
  let cursor: string | null = null
  do {
    const page: MetaReplies['readdir'] = await meta.call('readdir', { ino, cursor })
    entries.push(...page.entries)
    cursor = page.next
  } while (cursor)
  return entries
}
