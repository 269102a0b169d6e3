import { describe, expect, it } from 'vitest'
import { parseDurationMs, parseSizeBytes } from '../../src/config/units.js'

describe('parseDurationMs', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h1m1s1ms', 3_661_001],
    ['0s', 0],
  ])('reads %s as %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms)
  })

  it.each(['', '5', 's', '5 s', '5sec', '-1s', '1d', '1s ', 'ms5'])('refuses %j with a message naming it', (text) => {
    expect(() => parseDurationMs(text)).toThrow(/invalid duration/)
  })
})

describe('parseSizeBytes', () => {
  it.each([
    [0, 0],
    [1024, 1024],
    ['512', 512],
    ['100B', 100],
    ['100b', 100],
    ['512KiB', 524_288],
    ['10MiB', 10_485_760],
    ['1GiB', 1_073_741_824],
    ['100kB', 100_000],
    ['100KB', 100_000],
    ['2MB', 2_000_000],
    ['1GB', 1_000_000_000],
    ['1.5KiB', 1536],
    ['1.1kB', 1100],
    ['10 MiB', 10_485_760],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(parseSizeBytes(text)).toBe(bytes)
  })

  it.each(['', 'lots', '10 mib', '10TB', '-1', '1.5B'])('refuses %j with a message naming it', (text) => {
    expect(() => parseSizeBytes(text)).toThrow(/invalid size/)
  })

  it('refuses negative and fractional byte counts', () => {
    expect(() => parseSizeBytes(-1)).toThrow(/invalid size -1/)
    expect(() => parseSizeBytes(1.5)).toThrow(/invalid size 1.5/)
  })
})
