package sshservice

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"nightshift/launchplan"
)

// ErrUnreachable marks failures to reach a host at all (TCP connect refused
// or timed out). Release returns it so the engine can decide whether a host
// that is gone for good counts as released.
var ErrUnreachable = errors.New("host unreachable")

// ErrAuth marks a server that refused our key.
var ErrAuth = errors.New("authentication failed")

// HostKeyError is returned when a host's key does not match what is pinned
// for it, or (strict known_hosts file) when the host is not listed at all.
type HostKeyError struct {
	Addr string // host:port as dialled
	File string // the known_hosts file consulted
	Got  string // type and SHA256 fingerprint the server presented
	// Want lists the pinned keys as "file:line TYPE SHA256:..."; empty when
	// the host is unknown.
	Want []string
}

func (e *HostKeyError) Error() string {
	if len(e.Want) == 0 {
		return fmt.Sprintf("host key of %s (%s) is not in %s; add it (ssh-keyscan) or leave ssh.known_hosts_file empty to pin it on first use",
			e.Addr, e.Got, e.File)
	}
	return fmt.Sprintf("host key of %s CHANGED: server presented %s but %s is pinned; refusing to connect (possible man-in-the-middle); if the host was really reinstalled, delete that line",
		e.Addr, e.Got, strings.Join(e.Want, ", "))
}

// target is a resolved ssh destination.
type target struct {
	host, user, addr string
	port             int
}

func resolveTarget(cfg *launchplan.SSH) (target, error) {
	if cfg == nil {
		return target{}, errors.New("service has no [ssh] section")
	}
	if cfg.Host == "" {
		return target{}, errors.New("ssh.host is empty")
	}
	port := cfg.Port
	if port == 0 {
		port = 22
	}
	if port < 0 || port > 65535 {
		return target{}, fmt.Errorf("ssh.port %d out of range", port)
	}
	u := cfg.User
	if u == "" {
		cur, err := user.Current()
		if err != nil {
			return target{}, fmt.Errorf("ssh.user is empty and the local user is unknown: %w", err)
		}
		u = cur.Username
	}
	return target{host: cfg.Host, port: port, user: u, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(port))}, nil
}

// expandHome turns a leading ~ into the local home directory, as ssh does.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %q: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

func loadSigner(keyFile string) (ssh.Signer, error) {
	if keyFile == "" {
		return nil, errors.New("ssh.key_file is empty")
	}
	path, err := expandHome(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh.key_file: %w", err)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh.key_file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var pass *ssh.PassphraseMissingError
	if errors.As(err, &pass) {
		return nil, fmt.Errorf("ssh.key_file %s is passphrase-protected; nightshift needs an unencrypted key", path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh.key_file %s: %w", path, err)
	}
	return signer, nil
}

// hostKeyCheck returns the callback that verifies the server, plus the
// host key algorithms to ask for so that a server with several host keys
// presents the one we pinned rather than failing the check.
func (d *Driver) hostKeyCheck(cfg *launchplan.SSH, t target) (ssh.HostKeyCallback, []string, error) {
	if cfg.KnownHostsFile != "" {
		path, err := expandHome(cfg.KnownHostsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh.known_hosts_file: %w", err)
		}
		db, err := knownhosts.New(path)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh.known_hosts_file: %w", err)
		}
		check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			return explainHostKeyErr(db(hostname, remote, key), t.addr, path, key)
		}
		return check, pinnedAlgorithms(db, t.addr), nil
	}
	if d.Home == "" {
		return nil, nil, errors.New("ssh.known_hosts_file is empty and the driver has no home dir to pin host keys in")
	}
	path := filepath.Join(d.Home, "known_hosts")
	db, err := loadKnownHosts(path)
	if err != nil {
		return nil, nil, err
	}
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		return d.trustOnFirstUse(path, hostname, remote, key, t.addr)
	}
	var algos []string
	if db != nil {
		algos = pinnedAlgorithms(db, t.addr)
	}
	return check, algos, nil
}

// trustOnFirstUse accepts and records the key of a host seen for the first
// time and holds every later connection to it. The file is re-read under
// the driver's lock so that parallel services pin a new host only once.
func (d *Driver) trustOnFirstUse(path, hostname string, remote net.Addr, key ssh.PublicKey, addr string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	db, err := loadKnownHosts(path)
	if err != nil {
		return err
	}
	if db != nil {
		err := db(hostname, remote, key)
		var ke *knownhosts.KeyError
		if err == nil || !errors.As(err, &ke) || len(ke.Want) > 0 {
			return explainHostKeyErr(err, addr, path, key)
		}
	}
	if err := os.MkdirAll(d.Home, 0o700); err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	_, werr := f.WriteString(knownhosts.Line([]string{addr}, key) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("pin host key in %s: %w", path, werr)
	}
	d.log().Info("ssh: pinned host key on first use", "addr", addr, "key", describeKey(key), "file", path)
	return nil
}

// loadKnownHosts returns nil (no error) when the file does not exist yet.
func loadKnownHosts(path string) (ssh.HostKeyCallback, error) {
	db, err := knownhosts.New(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known hosts %s: %w", path, err)
	}
	return db, nil
}

func explainHostKeyErr(err error, addr, file string, key ssh.PublicKey) error {
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("host key of %s (%s) is revoked in %s:%d", addr, describeKey(key), re.Revoked.Filename, re.Revoked.Line)
		}
		return err
	}
	he := &HostKeyError{Addr: addr, File: file, Got: describeKey(key)}
	for _, w := range ke.Want {
		he.Want = append(he.Want, fmt.Sprintf("%s:%d %s", w.Filename, w.Line, describeKey(w.Key)))
	}
	return he
}

func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// probeKey is a key nobody has: checking it against the database makes
// knownhosts list every key pinned for the host (KeyError.Want), which is
// the only lookup the package offers.
func probeKey() ssh.PublicKey {
	k, _ := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	return k
}

type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

func pinnedAlgorithms(db ssh.HostKeyCallback, addr string) []string {
	err := db(addr, addrString(addr), probeKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// connect dials and authenticates within DialTimeout; ctx bounds the whole
// attempt, so a cancelled boot does not wait for a dead host.
func (d *Driver) connect(ctx context.Context, svc *launchplan.Service) (*ssh.Client, target, error) {
	cfg := svc.SSH
	// Configuration errors point at the service in the plan.
	t, err := resolveTarget(cfg)
	if err != nil {
		return nil, t, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	signer, err := loadSigner(cfg.KeyFile)
	if err != nil {
		return nil, t, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	check, algos, err := d.hostKeyCheck(cfg, t)
	if err != nil {
		return nil, t, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	timeout := d.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	who := t.user + "@" + t.addr
	var nd net.Dialer
	conn, err := nd.DialContext(dctx, "tcp", t.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, t, fmt.Errorf("ssh %s: %w", who, ctx.Err())
		}
		return nil, t, fmt.Errorf("ssh %s: %w: %w", who, ErrUnreachable, err)
	}
	// The ssh handshake ignores contexts; closing the conn is what unblocks it.
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, t.addr, &ssh.ClientConfig{
		User:              t.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	})
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = dctx.Err()
		}
		switch {
		case ctx.Err() != nil:
			return nil, t, fmt.Errorf("ssh %s: %w", who, ctx.Err())
		case dctx.Err() != nil:
			return nil, t, fmt.Errorf("ssh %s: %w: no ssh handshake within %s", who, ErrUnreachable, timeout)
		case strings.Contains(err.Error(), "unable to authenticate"):
			// x/crypto/ssh has no typed error for this; its message is stable.
			return nil, t, fmt.Errorf("ssh %s: %w: server refused key %s (is its public half in the user's authorized_keys?): %w",
				who, ErrAuth, cfg.KeyFile, err)
		}
		return nil, t, fmt.Errorf("ssh %s: %w", who, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), t, nil
}
