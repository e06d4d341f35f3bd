// Building remote command lines: POSIX quoting, `~` paths that the remote shell expands, and the login
// shell wrapper (a non-login SSH command on macOS lacks Homebrew's PATH, so node and python3 go missing).

/** Single-quotes a word for a POSIX shell. */
export function sq(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quotes a remote path, leaving a leading `~/` to the remote $HOME. */
export function rpath(p: string): string {
  if (p === '~') return '"$HOME"';
  if (p.startsWith('~/')) return `"$HOME"/${sq(p.slice(2))}`;
  return sq(p);
}

/** Runs a POSIX script in the user's login shell (zsh/bash read their profile; Homebrew's PATH is set there). */
export function loginShell(script: string): string {
  return `exec "\${SHELL:-/bin/sh}" -lc ${sq(script)}`;
}
