// Package sshtest owns a test helper that starts a real OpenSSH sshd on
// 127.0.0.1 with throwaway host and client keys, so that ssh code is tested
// against the server it will meet in production rather than a Go fake.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"nightshift/internal/nsenv"
	"nightshift/launchplan"
)

// SSHDPath is where Debian's openssh-server installs sshd; sshd refuses to
// run unless started by absolute path.
const SSHDPath = "/usr/sbin/sshd"

// StrictEnv makes missing services fail tests instead of skipping them (CI).
const StrictEnv = nsenv.TestStrict

// Server is a running sshd that accepts the client key in KeyFile.
type Server struct {
	Addr string // "127.0.0.1:port"
	Host string // "127.0.0.1"
	Port int
	User string
	// KeyFile is the client's private key (OpenSSH format, unencrypted).
	KeyFile string
	// KnownHostsLine pins the server's host key for Addr in known_hosts format.
	KnownHostsLine string
	// KnownHostsFile is a file holding just KnownHostsLine.
	KnownHostsFile string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// Dir is the temp dir holding config, keys and pid file.
	Dir string

	mu     sync.Mutex
	stderr bytes.Buffer
}

// SkipOrFail skips the test with msg, or fails it when StrictEnv=1, because
// CI must not go green by skipping everything.
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(StrictEnv) == "1" {
		t.Fatalf("%s (%s=1 forbids skipping)", msg, StrictEnv)
	}
	t.Skip(msg)
}

// Start starts sshd for the duration of the test. It skips the test (or
// fails it under NIGHTSHIFT_TEST_STRICT=1) when sshd is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		SkipOrFail(t, "sshtest: "+SSHDPath+" not installed (apt-get install openssh-server)")
	}
	// sshd started as root needs its privilege separation directory.
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			SkipOrFail(t, fmt.Sprintf("sshtest: cannot create /run/sshd: %v", err))
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}

	dir := t.TempDir()
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: dir}

	hostPub := writeKey(t, filepath.Join(dir, "host_ed25519"))
	clientPub := writeKey(t, filepath.Join(dir, "client_ed25519"))
	s.KeyFile = filepath.Join(dir, "client_ed25519")
	s.HostKey = hostPub
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}

	// A freed port can be taken by someone else before sshd binds it, so
	// retry a few times rather than flake.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshtest: free port: %v", err)
		}
		if lastErr = s.start(t, port, authKeys); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("sshtest: start sshd: %v", lastErr)
	}

	s.KnownHostsLine = knownhosts.Line([]string{s.Addr}, hostPub)
	s.KnownHostsFile = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(s.KnownHostsFile, []byte(s.KnownHostsLine+"\n"), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return s
}

func (s *Server) start(t testing.TB, port int, authKeys string) error {
	cfg := filepath.Join(s.Dir, "sshd_config")
	conf := strings.Join([]string{
		"ListenAddress 127.0.0.1:" + strconv.Itoa(port),
		"HostKey " + filepath.Join(s.Dir, "host_ed25519"),
		"AuthorizedKeysFile " + authKeys,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UseDNS no",
		"LogLevel INFO",
		"Subsystem sftp internal-sftp",
		"",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", cfg)
	// If the test binary is killed (go test -timeout), t.Cleanup never
	// runs; the kernel then stops sshd instead of leaving it listening.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = &lockedWriter{s: s}
	cmd.Stderr = &lockedWriter{s: s}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited early: %s", s.Log())
		default:
		}
		if bannerReady(addr) {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("sshd did not accept on %s within 10s: %s", addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, not an assertion
	}
	s.Addr, s.Port = addr, port
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			if l := s.Log(); l != "" {
				t.Logf("sshd log:\n%s", l)
			}
		}
	})
	return nil
}

// bannerReady reports whether an SSH server answers on addr, which proves
// it is sshd (not some other listener that took the port) and ready.
func bannerReady(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	n, _ := c.Read(buf)
	return n == 4 && string(buf) == "SSH-"
}

// Log returns what sshd wrote to stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// SSH returns a plan SSH section that reaches this server with strict host
// key checking against KnownHostsFile.
func (s *Server) SSH(stageDir string) *launchplan.SSH {
	return &launchplan.SSH{
		Host:           s.Host,
		Port:           s.Port,
		User:           s.User,
		KeyFile:        s.KeyFile,
		KnownHostsFile: s.KnownHostsFile,
		StageDir:       stageDir,
	}
}

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(p)
}

// NewKey writes a fresh unencrypted ed25519 private key to path (0600) and
// returns its public half; tests use it for "wrong key" cases too.
func NewKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	return writeKey(t, path)
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "nightshift-test")
	if err != nil {
		t.Fatalf("sshtest: marshal key: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("sshtest: write key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("sshtest: public key: %v", err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatalf("sshtest: write key: %v", err)
	}
	return sshPub
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
