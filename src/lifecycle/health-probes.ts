// Active health probes of a process that owns them: the single process, or the cluster primary probing for
// its workers (README "Health checks"). Counts tollgate_upstream_ejections_total{reason="active"} here, where
// the probes run, so N workers do not count one ejection N times.
import type { Metrics } from '../telemetry/metrics.js'
import type { ActiveReport, ActiveState } from '../upstream/health/active.js'
import { ProbeSet } from '../upstream/health/probe-set.js'

export function createProbeSet(metrics: Metrics, onReport: (report: ActiveReport, previous: ActiveState | null) => void): ProbeSet {
  return new ProbeSet((report, previous) => {
    if (previous === 'healthy' && report.state === 'unhealthy') {
      // Report URLs are normalised `scheme://host:port`: the target label is what follows `//`.
      metrics.ejections.labels(report.upstream, report.url.slice(report.url.indexOf('//') + 2), 'active').inc()
    }
    onReport(report, previous)
  })
}
