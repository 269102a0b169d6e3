import { describe, expect, it } from 'vitest'
import { listenAddress, splitHostPort } from '../../src/lib/host-port.js'

describe('host:port', () => {
  it.each([
    ['127.0.0.1:8080', '127.0.0.1', '8080', '127.0.0.1'],
    ['[::1]:9901', '[::1]', '9901', '::1'],
    [':80', '', '80', '0.0.0.0'],
    ['localhost:0', 'localhost', '0', 'localhost'],
  ])('%s', (address, host, port, bare) => {
    expect(splitHostPort(address)).toEqual({ host, port })
    expect(listenAddress(address)).toEqual({ host: bare, port: Number(port) })
  })
})
