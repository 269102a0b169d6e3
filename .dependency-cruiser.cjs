// Import direction (README.md "Architecture"), checked by `npm run lint`. Each line of LAYERS may import only from
// the lines below it, never from a line above nor from a sibling folder on its own line; a folder may
// import its own files, and the entry files on the top line may import each other. etcd/commands/ are
// CLI commands: they sit with commands/, above the etcd runtime they use. `import type` of config/ is fine anywhere (it is the bottom layer in any case).
// No runtime cycle either: the exchange and its pipeline/forward modules refer to each other's types only.
const LAYERS = [
  ['cli\\.ts', 'main\\.ts', 'demo\\.ts'],
  ['lifecycle', 'commands', 'etcd/commands'],
  ['proxy', 'admin'],
  ['table'],
  ['policy', 'upstream', 'telemetry'],
  ['router'],
  ['http'],
  ['etcd'],
  ['config'],
  ['lib', 'errors\\.ts'],
]

const pathOf = (name) => (name.endsWith('\\.ts') ? `^src/${name}$` : name === 'etcd' ? '^src/etcd/(?!commands/)' : `^src/${name}/`)

const layering = LAYERS.flatMap((line, i) => line.map((name) => {
  const above = LAYERS.slice(0, i).flat()
  // The entry files on the top line wire each other (cli.ts runs main.ts); folders on one line do not.
  const siblings = i === 0 ? [] : line.filter((other) => other !== name)
  const forbidden = [...above, ...siblings].map(pathOf)
  return {
    name: `layering:${name.replace('\\.ts', '.ts')}`,
    comment: `src/${name.replace('\\.ts', '.ts')} may import only from the layers below it (.dependency-cruiser.cjs LAYERS)`,
    severity: 'error',
    from: { path: pathOf(name) },
    to: { path: forbidden.length > 0 ? forbidden.join('|') : '^$' },
  }
}))

module.exports = {
  forbidden: [
    ...layering,
    {
      name: 'no-circular',
      comment: 'A runtime import cycle: one of the modules must take what it needs from its caller instead.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
