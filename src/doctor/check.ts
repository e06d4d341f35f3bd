// One doctor check's result: what was checked, what was found, and for a failure the one thing to do.
export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface CheckResult {
  group: string;
  title: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export const pass = (group: string, title: string, detail: string): CheckResult => ({ group, title, status: 'pass', detail });
export const fail = (group: string, title: string, detail: string, fix: string): CheckResult => ({ group, title, status: 'fail', detail, fix });
export const warn = (group: string, title: string, detail: string, fix?: string): CheckResult => ({ group, title, status: 'warn', detail, fix });
export const skip = (group: string, title: string, reason: string): CheckResult => ({ group, title, status: 'skip', detail: reason });

const MARK: Record<CheckStatus, string> = { pass: '✅', fail: '❌', warn: '⚠️ ', skip: '⏭️ ' };

export function formatReport(results: CheckResult[]): string {
  const out: string[] = [];
  let group = '';
  for (const r of results) {
    if (r.group !== group) {
      group = r.group;
      out.push(`${out.length ? '\n' : ''}${group}`);
    }
    out.push(`  ${MARK[r.status]} ${r.title}: ${r.detail}`);
    if (r.fix && r.status !== 'pass') out.push(`     fix: ${r.fix}`);
  }
  const failed = results.filter((r) => r.status === 'fail').length;
  out.push('', failed ? `${failed} check(s) failed` : 'all checks passed');
  return `${out.join('\n')}\n`;
}
