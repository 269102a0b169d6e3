// The signal helper (src/lifecycle/signals.ts) in a real child process: real signals, real exit codes.
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'

const DIST = resolve(import.meta.dirname, '../../dist/src')

// Prints `graceful` when the shutdown starts and finishes it when a line arrives on stdin; `begin` on stdin
// starts it without a signal, as a worker's primary does. Its own SIGTERM and SIGUSR2 listeners, added after
// the helper's, print `saw <signal>`: the test waits for them instead of sleeping.
const SCRIPT = `
const { handleShutdownSignals } = await import(${JSON.stringify(`${DIST}/lifecycle/signals.js`)})
const { createLogger } = await import(${JSON.stringify(`${DIST}/telemetry/log.js`)})
const options = JSON.parse(process.argv[1])
let finish
const handle = handleShutdownSignals(() => new Promise((r) => { finish = r; console.log('graceful') }), createLogger({ TOLLGATE_LOG_LEVEL: 'silent' }), options)
process.stdin.setEncoding('utf8')
process.stdin.on('data', (line) => {
  if (line.startsWith('begin')) handle.begin('test')
  else finish?.()
})
handle.exitCode.then((code) => process.exit(code))
for (const signal of ['SIGTERM', 'SIGUSR2']) process.on(signal, () => console.log('saw ' + signal))
console.log('ready')
`

function child(options: object = {}) {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] })
  onTestFinished(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  let out = ''
  const waiters: Array<() => void> = []
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', (d: string) => {
    out += d
    for (const w of waiters.splice(0)) w()
  })
  let gone = false
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => {
    gone = true
    for (const w of waiters.splice(0)) w()
    r({ code, signal })
  }))
  const line = async (text: string): Promise<void> => {
    while (!out.split('\n').includes(text)) {
      if (gone) throw new Error(`exited (${proc.exitCode ?? proc.signalCode}) before printing ${JSON.stringify(text)}; printed ${JSON.stringify(out)}`)
      await new Promise<void>((r) => waiters.push(r))
    }
  }
  return { proc, exited, line, lines: () => out.split('\n').filter((l) => l !== '') }
}

describe('handleShutdownSignals', () => {
  it('shuts down gracefully on SIGTERM and exits 0 once that finished', async () => {
    const c = child()
    await c.line('ready')
    c.proc.kill('SIGTERM')
    await c.line('graceful')
    await c.line('saw SIGTERM')
    c.proc.stdin.write('done\n')
    expect(await c.exited).toEqual({ code: 0, signal: null })
  })

  it('exits 1 at once on a second signal while the graceful shutdown runs', async () => {
    const c = child()
    await c.line('ready')
    c.proc.kill('SIGINT')
    await c.line('graceful')
    c.proc.kill('SIGTERM')
    expect(await c.exited).toEqual({ code: 1, signal: null })
    expect(c.lines()).toEqual(['ready', 'graceful'])
  })

  it('does not count a begin() without a signal: the next SIGTERM is the first, not the second', async () => {
    const c = child()
    await c.line('ready')
    c.proc.stdin.write('begin\n')
    await c.line('graceful')
    c.proc.kill('SIGTERM')
    await c.line('saw SIGTERM')
    c.proc.stdin.write('done\n')
    expect(await c.exited).toEqual({ code: 0, signal: null })
    expect(c.lines()).toEqual(['ready', 'graceful', 'saw SIGTERM'])
  })

  it('swallows the ignored signals (a worker and the terminal\u2019s ^C)', async () => {
    const c = child({ signals: ['SIGTERM'], ignored: ['SIGINT'] })
    await c.line('ready')
    c.proc.kill('SIGINT')
    c.proc.kill('SIGUSR2')
    await c.line('saw SIGUSR2')
    expect(c.lines()).toEqual(['ready', 'saw SIGUSR2'])
    c.proc.kill('SIGTERM')
    await c.line('graceful')
    c.proc.stdin.write('done\n')
    // Had SIGINT started the shutdown, SIGTERM would have been the second signal: exit 1.
    expect(await c.exited).toEqual({ code: 0, signal: null })
  })
})
