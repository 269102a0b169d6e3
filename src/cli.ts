#!/usr/bin/env node
// tollgate [run] [--config F] [--listen A] [--admin A] [--workers N|auto]
// tollgate validate [F]     tollgate schema
// tollgate etcd put F [--prune] [--dry-run] | etcd get     tollgate register --upstream U --url URL
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { runGateway } from './main.js'

const USAGE = `usage:
  tollgate [--config routes.yaml] [--listen host:port] [--admin host:port] [--workers N|auto]
  tollgate validate [routes.yaml]
  tollgate schema
  tollgate --version | --help
  tollgate etcd put F [--prune] [--dry-run]
  tollgate etcd get
  tollgate register --upstream U --url URL [--ttl 10s] [--id ID] [--weight N]
  (etcd commands: --endpoints, --prefix, --config; see tollgate etcd help)`

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version') || argv[0] === 'version') {
    process.stdout.write(`tollgate ${await packageVersion()}\n`)
    return 0
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const command = argv[0] !== undefined && !argv[0].startsWith('-') ? argv[0] : 'run'
  const rest = command === 'run' && argv[0] !== 'run' ? argv : argv.slice(1)
  switch (command) {
    // Loaded on demand, like the etcd commands below: a cluster worker never loads the config parser.
    case 'validate': {
      const { runValidate } = await import('./commands/validate-command.js')
      // The same file the gateway would run: TOLLGATE_CONFIG names it for both (README "Command line").
      const r = await runValidate(rest[0] ?? process.env['TOLLGATE_CONFIG'] ?? 'routes.yaml', process.env)
      process.stdout.write(r.stdout)
      process.stderr.write(r.stderr)
      return r.exitCode
    }
    case 'schema': {
      const { schemaJson } = await import('./commands/validate-command.js')
      process.stdout.write(schemaJson())
      return 0
    }
    case 'run':
      return run(rest)
    // Loaded on demand: the gateway itself never needs them (nor etcd3, unless the config has etcd:).
    case 'etcd': {
      const { runEtcdCommand } = await import('./etcd/commands/etcd-command.js')
      const code = await runEtcdCommand(rest, commandIo())
      // `etcd get` may print a lot into a pipe: let it drain before the exit below.
      await new Promise<void>((resolve) => process.stdout.write('', () => resolve()))
      return code
    }
    case 'register': {
      const { runRegister } = await import('./etcd/commands/register-command.js')
      return runRegister(rest, commandIo())
    }
    case 'help': case '--help': case '-h':
      process.stdout.write(USAGE + '\n')
      return 0
    default:
      process.stderr.write(`tollgate: unknown command ${JSON.stringify(command)}\n${USAGE}\n`)
      return 2
  }
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }
  return pkg.version ?? 'unknown'
}

function commandIo(): { stdout(text: string): void; stderr(text: string): void; env: NodeJS.ProcessEnv } {
  return { stdout: (t) => { process.stdout.write(t) }, stderr: (t) => { process.stderr.write(t) }, env: process.env }
}

async function run(args: string[]): Promise<number> {
  let values: { config?: string; listen?: string; admin?: string; workers?: string }
  try {
    values = parseArgs({
      args,
      options: { config: { type: 'string' }, listen: { type: 'string' }, admin: { type: 'string' }, workers: { type: 'string' } },
      strict: true,
    }).values
  } catch (err) {
    process.stderr.write(`tollgate: ${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  // Flags win over TOLLGATE_* variables, which win over the file: pass them through the same override path.
  const env = { ...process.env }
  // TOLLGATE_FROM_FLAGS tells the override code to name the flag, not the variable, in messages.
  const fromFlags: string[] = []
  if (values.listen !== undefined) {
    env['TOLLGATE_LISTEN'] = values.listen
    fromFlags.push('listen')
  }
  if (values.admin !== undefined) {
    env['TOLLGATE_ADMIN'] = values.admin
    fromFlags.push('admin')
  }
  if (fromFlags.length > 0) env['TOLLGATE_FROM_FLAGS'] = fromFlags.join(',')
  const configPath = values.config ?? env['TOLLGATE_CONFIG'] ?? 'routes.yaml'
  const workers = values.workers === undefined ? 1 : values.workers === 'auto' ? availableParallelism() : Number(values.workers)
  if (!Number.isInteger(workers) || workers < 1) {
    process.stderr.write(`tollgate: --workers must be a positive integer or auto, got ${JSON.stringify(values.workers)}\n`)
    return 2
  }
  return runGateway(configPath, env, workers)
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Flush pino, then leave even if a library left a handle open.
  setTimeout(() => process.exit(code), 100).unref()
}, (err: unknown) => {
  process.stderr.write(`tollgate: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
