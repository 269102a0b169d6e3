// README's first command: `npm run demo` starts the gateway on the bundled routes.yaml with two example
// services, prints curl commands, and the commands it prints do what their comments say. DEMO_PORTS=0 puts
// every listener on a free port (it prints them), so the test does not depend on 8080, 9901, 9001 and
// 9002 being free on the machine.
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { httpRequest } from './helpers/gateway.js'
import { rawRequest, statusOf } from './helpers/raw.js'

const root = resolve(import.meta.dirname, '..')

describe('npm run demo', () => {
  it('serves the bundled routes.yaml with its example services and prints working curl commands', async () => {
    const child = spawn(process.execPath, ['dist/src/demo.js'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOLLGATE_LOG_LEVEL: 'warn', DEMO_PORTS: '0' } })
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    onTestFinished(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let out = ''
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d })
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d
        if (out.includes('Ctrl-C')) resolve()
      })
      child.once('exit', () => reject(new Error(`demo exited early:\n${out}\n${err}`)))
    })
    const ports = /gateway on http:\/\/127\.0\.0\.1:(\d+), admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)
    expect(ports).not.toBeNull()
    const [proxy, admin] = [Number(ports![1]), Number(ports![2])]
    expect(out).toMatch(/example services: users on :\d+, orders on :\d+/)
    expect(out).not.toMatch(/:(8080|9901|9001|9002)\b/)
    const gw = `http://127.0.0.1:${proxy}`
    expect(out).toContain(`curl -i ${gw}/api/users/42`)

    const user = await httpRequest(`${gw}/api/users/42`)
    expect(user.status).toBe(200)
    expect(user.json()).toMatchObject({ service: 'users', path: '/users/42' })
    const post = await httpRequest(`${gw}/api/users/42`, { method: 'POST' })
    expect(post.status).toBe(405)
    expect(post.headers['allow']).toBe('DELETE, GET, HEAD, PUT')
    const order = await httpRequest(`${gw}/api/orders/7?expand=items`)
    expect(order.json()).toMatchObject({ service: 'orders', path: '/orders/7?expand=items' })
    expect((await httpRequest(`${gw}/nowhere`)).status).toBe(404)
    const dots = await rawRequest(proxy, `GET /api/users/../admin HTTP/1.1\r\nHost: 127.0.0.1:${proxy}\r\nConnection: close\r\n\r\n`)
    expect(statusOf(dots)).toBe(400)
    expect((await httpRequest(`${gw}/api/users/a%2Fb`)).status).toBe(400)
    expect((await httpRequest(`http://127.0.0.1:${admin}/status`)).json()).toMatchObject({ config: { source: 'file' } })
    expect((await httpRequest(`http://127.0.0.1:${admin}/metrics`)).body).toContain('tollgate_requests_total{route="users-read"')

    child.kill('SIGINT')
    expect(await exited).toBe(0)
  })
})
