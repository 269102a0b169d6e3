// Watch routes.yaml for changes. We watch the DIRECTORY, not the file: editors save by writing a temp file
// and renaming it over the original, and Kubernetes ConfigMaps swap a `..data` symlink; a watch on the file
// itself dies with the old inode (traefik#1188, envoy#3928). Events are debounced, and the caller compares
// contents, so a burst of writes becomes one reload. A slow stat poll covers filesystems without inotify.
import { statSync, watch, type FSWatcher } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'

export interface ConfigWatcher {
  close(): Promise<void>
}

export function watchConfigFile(file: string, onChange: () => void, debounceMs = 200, pollMs = 2000): ConfigWatcher {
  const path = resolve(file)
  const dir = dirname(path)
  const name = basename(path)
  let timer: NodeJS.Timeout | null = null
  let closed = false
  const fire = (): void => {
    if (closed) return
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      if (!closed) onChange()
    }, debounceMs)
  }
  let watcher: FSWatcher | null = null
  try {
    watcher = watch(dir, { persistent: false }, (_event, filename) => {
      if (filename === null || filename === name || filename === '..data' || filename.startsWith(name)) fire()
    })
    watcher.on('error', () => undefined)
  } catch {
    watcher = null
  }
  // Poll fallback (NFS, some container overlays): mtime/size/inode change triggers the same path.
  // The baseline is taken now, not at the first tick: a change in the first period is seen too.
  let last = ''
  try {
    const s = statSync(path)
    last = `${s.mtimeMs}:${s.size}:${s.ino}`
  } catch {
    // not there yet: the first tick that finds it sets the baseline
  }
  const poll = setInterval(() => {
    stat(path).then((s) => {
      const sig = `${s.mtimeMs}:${s.size}:${s.ino}`
      if (last !== '' && sig !== last) fire()
      last = sig
    }, () => undefined)
  }, pollMs)
  poll.unref()
  return {
    async close() {
      closed = true
      if (timer !== null) clearTimeout(timer)
      clearInterval(poll)
      watcher?.close()
    },
  }
}
