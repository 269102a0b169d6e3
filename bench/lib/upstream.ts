// The one upstream every peer forwards to: nginx when installed (it is not the bottleneck), else node:http.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fillerBody, KIB4_BYTES, MIB1_BYTES } from './bodies.js'
import { nginxUpstreamConfig } from './native-configs.js'
import { benchScript } from './paths.js'
import { findBinary, freePort, spawnChild, waitUntilReady, type Child } from './processes.js'

export interface Upstream {
  readonly kind: 'nginx' | 'node:http'
  readonly url: string
  /** host:port, for configs that want no scheme. */
  readonly hostPort: string
  readonly child: Child
}

export async function startUpstream(tmpDir: string, core: number | null): Promise<Upstream> {
  const port = await freePort()
  const hostPort = `127.0.0.1:${port}`
  const nginx = findBinary('nginx')
  let child: Child
  let kind: Upstream['kind']
  if (nginx !== null) {
    const dir = join(tmpDir, 'upstream-nginx')
    const root = join(dir, 'www')
    mkdirSync(root, { recursive: true })
    writeFileSync(join(root, '4k'), fillerBody(KIB4_BYTES))
    writeFileSync(join(root, '1m'), fillerBody(MIB1_BYTES))
    const conf = join(dir, 'nginx.conf')
    writeFileSync(conf, nginxUpstreamConfig(dir, port, root))
    child = spawnChild('upstream', nginx, ['-p', dir, '-c', conf, '-e', 'stderr'], { core, logPath: join(dir, 'log') })
    kind = 'nginx'
  } else {
    child = spawnChild('upstream', process.execPath, [benchScript('upstream-server.js'), '--port', String(port)], {
      core, logPath: join(tmpDir, 'upstream.log'),
    })
    kind = 'node:http'
  }
  const notReady = await waitUntilReady(`http://${hostPort}/`, 10_000, child)
  if (notReady !== null) {
    await child.stop()
    throw new Error(`upstream (${kind}) ${notReady}`)
  }
  return { kind, url: `http://${hostPort}`, hostPort, child }
}
