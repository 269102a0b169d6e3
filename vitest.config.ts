import { configDefaults, defineConfig } from 'vitest/config'

// The tests that load the machine for a minute or more on their own (the soak's and the drill's smoke runs,
// half a million limiter keys): they run after every other file, one at a time, so that their load does not
// land in the timing- and memory-sensitive tests that would otherwise share the two cores with them.
const HEAVY = ['test/e2e/soak-smoke.test.ts', 'test/e2e/drill.test.ts', 'test/e2e/ratelimit-memory.test.ts']

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Tests start real servers and child processes; two cores, so keep parallelism modest.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...HEAVY], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'heavy', include: HEAVY, sequence: { groupOrder: 1 }, poolOptions: { forks: { singleFork: true } } } },
    ],
  },
})
