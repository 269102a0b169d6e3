// Raw HTTP/1.1 over a socket, for requests no client library would send.
import net from 'node:net'

/** Sends `data`, returns everything the server wrote until it closed or `idleMs` passed without bytes. */
export function rawRequest(port: number, data: string | Buffer, idleMs = 500): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let out = ''
    let timer: NodeJS.Timeout | undefined
    const done = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(out)
    }
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(done, idleMs)
    }
    socket.on('data', (d) => { out += d.toString('latin1'); arm() })
    socket.on('close', done)
    socket.on('error', done)
    socket.write(data)
    arm()
  })
}

export function statusOf(response: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(response)
  return m === null ? 0 : Number(m[1])
}
