import { readFileSync } from 'node:fs';
import path from 'node:path';
import { WATCH_PATHS, WATCH_RESOURCES } from '../src/k8s';

/**
 * The chart's worker RBAC (charts/kubeshark/templates/worker-rbac.yaml) against what the
 * resolver's watcher requests: every path it lists and watches is allowed (get, list, watch on
 * that API group and resource) and nothing else is.
 */

const CHART = path.join(__dirname, '..', '..', '..', 'charts', 'kubeshark');
const template = readFileSync(path.join(CHART, 'templates', 'worker-rbac.yaml'), 'utf8');
const docs = template.split(/^---$/m);
const doc = (kind: string): string => {
  const d = docs.find((x) => new RegExp(`^kind: ${kind}$`, 'm').test(x));
  if (d === undefined) throw new Error(`no ${kind} in the template`);
  return d;
};
const list = (text: string): string[] => text.split(',').map((x) => x.trim().replace(/^"(.*)"$/, '$1'));

/** The ClusterRole's rules, written in flow style: `- apiGroups: [..]` / `resources: [..]` / `verbs: [..]`. */
function rules(): { group: string; resource: string; verbs: string[] }[] {
  const out: { group: string; resource: string; verbs: string[] }[] = [];
  const re = /- apiGroups: \[([^\]]*)\]\n\s+resources: \[([^\]]*)\]\n\s+verbs: \[([^\]]*)\]/g;
  for (const m of doc('ClusterRole').matchAll(re)) for (const g of list(m[1]!)) for (const r of list(m[2]!)) out.push({ group: g, resource: r, verbs: list(m[3]!) });
  return out;
}

/** `/api/v1/pods` -> core group "", `/apis/discovery.k8s.io/v1/endpointslices` -> that group. */
function groupResource(p: string): { group: string; resource: string } {
  const core = /^\/api\/v1\/([a-z]+)$/.exec(p);
  if (core) return { group: '', resource: core[1]! };
  const named = /^\/apis\/([^/]+)\/[^/]+\/([a-z]+)$/.exec(p);
  if (!named) throw new Error(`unexpected path ${p}`);
  return { group: named[1]!, resource: named[2]! };
}

test('the ClusterRole allows get, list and watch on exactly what the watcher requests', () => {
  const needed = WATCH_RESOURCES.map((r) => groupResource(WATCH_PATHS[r])).map((x) => `${x.group}/${x.resource}`).sort();
  expect(needed).toEqual(['/nodes', '/pods', '/services', 'discovery.k8s.io/endpointslices']);
  const granted = rules();
  expect(granted.map((r) => `${r.group}/${r.resource}`).sort()).toEqual(needed);
  for (const r of granted) expect([...r.verbs].sort()).toEqual(['get', 'list', 'watch']);
  expect(template).not.toContain('*');
});

test('the binding gives that ClusterRole to the ServiceAccount, behind worker.kubeWatch', () => {
  const sa = /name: (.+)\n/.exec(doc('ServiceAccount'))![1];
  const role = /name: (.+)\n/.exec(doc('ClusterRole'))![1];
  const binding = doc('ClusterRoleBinding');
  expect(binding).toContain(`roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: ${role}\n`);
  expect(binding).toContain(`subjects:\n  - kind: ServiceAccount\n    name: ${sa}\n    namespace: {{ .Release.Namespace }}\n`);
  expect(template.split('\n')[0]).toBe('{{- if .Values.worker.kubeWatch }}');
  expect(template.trimEnd().split('\n').at(-1)).toBe('{{- end }}');
  expect(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')).toMatch(/^worker:\n(?: {2}.*\n)*? {2}kubeWatch: true$/m);
});
