// Checks of this machine's network setup: mDNS, and on macOS the application firewall and the Local
// Network privacy setting that silently blocks LAN traffic of processes it does not trust.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Bonjour } from 'bonjour-service';
import { type CheckResult, fail, pass, skip, warn } from './check.ts';

const G = 'this machine';

/** Publishes a throwaway service and browses for it: proves multicast send and receive both work. */
export async function checkMdns(opts: { disabled: boolean; timeoutMs?: number; type?: string }): Promise<CheckResult> {
  const title = 'mDNS publish and browse';
  if (opts.disabled) return skip(G, title, 'skipped (--no-mdns): peers are found only through --peer');
  const type = opts.type ?? 'mlx-mesh-doctor';
  const name = `doctor-${randomBytes(4).toString('hex')}`;
  let socketError: Error | null = null;
  const bonjour = new Bonjour({}, (err: Error) => (socketError = err));
  try {
    const seen = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 3000);
      const browser = bonjour.find({ type }, (svc) => {
        if (svc.name === name) {
          clearTimeout(timer);
          browser.stop();
          resolve(true);
        }
      });
      bonjour.publish({ name, type, port: 9, probe: false });
    });
    if (seen) return pass(G, title, `announced and saw _${type}._tcp on the local network`);
    return fail(
      G,
      title,
      `no answer to our own announcement${socketError ? ` (${(socketError as Error).message})` : ''}`,
      process.platform === 'darwin'
        ? 'allow node under System Settings → Privacy & Security → Local Network, or use --peer host:port'
        : 'allow UDP 5353 multicast in the firewall, or use --no-mdns with --peer host:port',
    );
  } finally {
    await new Promise<void>((resolve) => bonjour.unpublishAll(() => bonjour.destroy(() => resolve())));
  }
}

function run(cmd: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 5000 }, (err, stdout) => resolve(err ? null : String(stdout))));
}

export function firewallVerdict(globalState: string | null, blockAll: string | null): CheckResult {
  const title = 'macOS firewall';
  if (globalState === null) return warn(G, title, 'state unknown (socketfilterfw did not answer)');
  if (/disabled|State = 0/i.test(globalState)) return pass(G, title, 'off');
  if (blockAll && /enabled/i.test(blockAll) && !/disabled/i.test(blockAll)) {
    return fail(G, title, 'on, blocking all incoming connections', 'System Settings → Network → Firewall → Options: turn off "Block all incoming connections"');
  }
  return warn(G, title, 'on: the first peer start asks whether node may accept incoming connections', 'click Allow, or add node under Firewall → Options');
}

export async function checkFirewall(platform: NodeJS.Platform = process.platform): Promise<CheckResult> {
  if (platform !== 'darwin') return skip(G, 'macOS firewall', `skipped: not macOS (${platform}); check iptables/nftables rules for the peer port yourself`);
  const fw = '/usr/libexec/ApplicationFirewall/socketfilterfw';
  return firewallVerdict(await run(fw, ['--getglobalstate']), await run(fw, ['--getblockall']));
}

export function checkLocalNetwork(platform: NodeJS.Platform = process.platform, release = os.release()): CheckResult {
  const title = 'macOS Local Network permission';
  if (platform !== 'darwin') return skip(G, title, `skipped: not macOS (${platform})`);
  // Darwin 24 is macOS 15, the first release that enforces Local Network privacy for command-line tools.
  if (Number(release.split('.')[0]) < 24) return pass(G, title, 'not enforced before macOS 15');
  return warn(
    G,
    title,
    'macOS 15+ asks once per app and does not let a command read the answer; a peer started over plain SSH is never allowed',
    'allow node under System Settings → Privacy & Security → Local Network; start remote peers with "mlx-mesh up" (LaunchAgent)',
  );
}
