package sshservice

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// envName is what `env NAME=VALUE` and every POSIX shell accept as a name; a
// key outside it would be misparsed remotely, so it is refused up front.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote makes s one POSIX shell word. Inside single quotes nothing is
// special except the closing quote, so each quote is written as close,
// backslash-escaped quote, reopen:
//
//	it's  ->  'it'\''s'
//
// This survives spaces, newlines, $(...), backquotes, ; and globs, which
// matters because sshd always hands the command string to a shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// remoteCommand builds the one command string that runs argv in dir with env
// on the remote host.
//
// Shape (all user data single-quoted):
//
//	cd 'DIR' && exec 3<&0 </dev/null && { WATCHER & exec env 'K=V'... 'PROG' 'ARG'... 2>&1 3<&-; }
//
// stderr is merged into stdout on the host, because only there is the
// order in which the program wrote the two known; ssh carries them as two
// streams whose interleaving the client cannot reconstruct.
//
// The program is exec'd, so it keeps the shell's pid, which is the session's
// process group leader (sshd calls setsid); a "signal" request from the
// client is delivered by OpenSSH with killpg, so SIGKILL reaches the program
// and every child that stayed in its group.
//
// WATCHER covers the launcher dying without sending a signal (kill -9,
// network loss): it reads the session's stdin (saved as fd 3; the client
// never closes it) and, when that hits EOF because the channel went away,
// kills the whole process group, but only if the program ($$ after exec) is
// still running. Programs that exited normally therefore keep their
// background children (boot programs that start daemons). Not guaranteed:
// children that called setsid/setpgid or were re-parented into another
// group, and a login shell that is not POSIX (csh, fish).
func remoteCommand(dir string, env map[string]string, argv []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", fmt.Errorf("empty program path")
	}
	// env(1) would read a leading '-' as an option and a '=' as one more
	// assignment instead of the program to run.
	if strings.HasPrefix(argv[0], "-") || strings.Contains(argv[0], "=") {
		return "", fmt.Errorf("program path %q: must not start with '-' or contain '='", argv[0])
	}
	if strings.ContainsRune(dir, 0) {
		return "", fmt.Errorf("stage dir %q contains a NUL byte", dir)
	}
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			return "", fmt.Errorf("argv[%d] contains a NUL byte, which no remote program can receive", i)
		}
	}
	keys := make([]string, 0, len(env))
	for k, v := range env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("env key %q: not a valid variable name", k)
		}
		if strings.ContainsRune(v, 0) {
			return "", fmt.Errorf("env %s: value contains a NUL byte", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var b strings.Builder
	b.WriteString("cd ")
	b.WriteString(quote(dir))
	b.WriteString(" && exec 3<&0 </dev/null && { ")
	b.WriteString(`(cat <&3 >/dev/null 2>&1; kill -0 $$ 2>/dev/null && kill -KILL 0) >/dev/null 2>&1 & `)
	b.WriteString("exec env")
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(quote(k + "=" + env[k]))
	}
	for _, a := range argv {
		b.WriteByte(' ')
		b.WriteString(quote(a))
	}
	b.WriteString(" 2>&1 3<&-; }")
	return b.String(), nil
}
