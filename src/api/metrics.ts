// Prometheus text for /metrics: cluster shape and link health, enough to alert on a lost peer.
import type { ViewSource } from './views.ts';
import { clusterStatus } from './views.ts';

export function metricsText(src: ViewSource): string {
  const { peer } = src;
  const lines: string[] = [];
  const metric = (name: string, help: string, type: string, samples: Array<[string, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric('mlx_mesh_world_size', 'Live peers in the cluster, this one included.', 'gauge', [['', peer.live().length]]);
  metric('mlx_mesh_term', 'Current coordinator term.', 'gauge', [['', peer.leadership.term]]);
  metric('mlx_mesh_is_coordinator', '1 when this peer is the coordinator.', 'gauge', [['', peer.isCoordinator ? 1 : 0]]);
  const status = clusterStatus(src);
  metric(
    'mlx_mesh_cluster_status',
    'Cluster status (1 for the current one).',
    'gauge',
    (['healthy', 'degraded', 'forming'] as const).map((s) => [`{status="${s}"}`, s === status ? 1 : 0]),
  );
  metric(
    'mlx_mesh_link_rtt_seconds',
    'Heartbeat round-trip time per link.',
    'gauge',
    peer.membership
      .all()
      .filter((l) => l.rttMs !== null)
      .map((l) => [`{peer="${l.remote.id}"}`, (l.rttMs ?? 0) / 1000]),
  );
  return `${lines.join('\n')}\n`;
}
