// The macOS LaunchAgent that runs a peer started over SSH. macOS 15+ gives Local Network access only to
// processes of the user's GUI session: a peer left behind by `nohup` over SSH cannot reach the other Macs,
// while one started by launchd in the gui/<uid> domain can (after the one-time "Allow" prompt).
import { createHash } from 'node:crypto';

export const LABEL_PREFIX = 'com.mlx-mesh.peer';

/** One agent per remote data dir, so two peers with different data dirs can run side by side. */
export function agentLabel(dataDir: string, isDefault: boolean): string {
  return isDefault ? LABEL_PREFIX : `${LABEL_PREFIX}.${createHash('sha256').update(dataDir).digest('hex').slice(0, 8)}`;
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function agentPlist(opts: { label: string; program: string[]; logFile: string; workingDir: string; env: Record<string, string> }): string {
  const args = opts.program.map((a) => `    <string>${xml(a)}</string>`).join('\n');
  const env = Object.entries(opts.env)
    .map(([k, v]) => `    <key>${xml(k)}</key>\n    <string>${xml(v)}</string>`)
    .join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${xml(opts.label)}</string>
  <key>ProgramArguments</key>
  <array>
${args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
${env}
  </dict>
  <key>WorkingDirectory</key>
  <string>${xml(opts.workingDir)}</string>
  <key>StandardOutPath</key>
  <string>${xml(opts.logFile)}</string>
  <key>StandardErrorPath</key>
  <string>${xml(opts.logFile)}</string>
  <key>RunAtLoad</key>
  <true/>
  <key>ProcessType</key>
  <string>Interactive</string>
</dict>
</plist>
`;
}

/** What a failed `launchctl bootstrap gui/<uid>` over SSH usually means, and what to do. */
export function explainBootstrapFailure(host: string, output: string): string {
  const noGui = /\b(5|125)\b|Input\/output error|Domain does not support/i.test(output);
  return noGui
    ? `launchd has no GUI session for this user on ${host}: macOS only lets processes of a logged-in session use the local ` +
        `network. Log in on ${host}'s screen (or turn on automatic login), then run "mlx-mesh up" again`
    : `launchctl bootstrap failed on ${host}: ${output.trim()}`;
}
