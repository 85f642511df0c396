export async function run(_argv: string[]): Promise<void> { throw new Error('not implemented yet') }
