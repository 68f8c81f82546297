package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func TestCAIsCreatedOnceWithPrivateKeyModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs", "r1", "pki")
	ca, err := LoadOrCreateCA(dir, "r1", now)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, CAKeyFile): 0o600, filepath.Join(dir, CACertFile): 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), want)
		}
	}
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA constraints: IsCA %v MaxPathLenZero %v usage %v", ca.Cert.IsCA, ca.Cert.MaxPathLenZero, ca.Cert.KeyUsage)
	}
	if _, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", ca.Cert.PublicKey)
	}
	if got := ca.Cert.NotAfter.Sub(now); got < CAValidity-time.Minute || got > CAValidity+time.Minute {
		t.Errorf("CA validity %s, want %s", got, CAValidity)
	}
	again, err := LoadOrCreateCA(dir, "r1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Error("a second load made a new CA: every client would stop trusting the broker")
	}
}

func TestCAFailures(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "r", now)
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if _, err := LoadOrCreateCA(otherDir, "r", now); err != nil {
		t.Fatal(err)
	}
	// Another CA's key beside this certificate: refused, not replaced.
	mixed := t.TempDir()
	os.WriteFile(filepath.Join(mixed, CACertFile), ca.CertPEM, 0o644)
	key2, _ := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	os.WriteFile(filepath.Join(mixed, CAKeyFile), key2, 0o600)
	if _, err := LoadOrCreateCA(mixed, "r", now); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	// A certificate without its key: refused.
	lone := t.TempDir()
	os.WriteFile(filepath.Join(lone, CACertFile), ca.CertPEM, 0o644)
	if _, err := LoadOrCreateCA(lone, "r", now); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("certificate without key: %v", err)
	}
	// A key without its certificate (a crash between the writes): a new CA.
	keyOnly := t.TempDir()
	os.WriteFile(filepath.Join(keyOnly, CAKeyFile), []byte("junk"), 0o600)
	if _, err := LoadOrCreateCA(keyOnly, "r", now); err != nil {
		t.Errorf("key without certificate: %v", err)
	}
	if _, _, err := ca.IssueServer(nil, now); err == nil {
		t.Error("a certificate without names was issued")
	}
}

func TestServerCertificateChainsAndNamesItsHosts(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), "r", now)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1", "broker.example"}
	certPEM, keyPEM, err := ca.IssueServer(hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		opts.DNSName = h
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", h, err)
		}
	}
	opts.DNSName = "evil.example"
	if _, err := cert.Verify(opts); err == nil {
		t.Error("certificate verified for a host it does not name")
	}
	if cert.IsCA {
		t.Error("server certificate is a CA")
	}
	if got := cert.NotAfter.Sub(now); got != ServerValidity {
		t.Errorf("server validity %s, want %s", got, ServerValidity)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Fatalf("server key PEM type: %v", b)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("certificate and key do not pair: %v", err)
	}
	if err := CheckServer(certPEM, ca.Pool(), hosts, now.Add(24*time.Hour)); err != nil {
		t.Errorf("fresh certificate judged unfit: %v", err)
	}
	other, _ := LoadOrCreateCA(t.TempDir(), "other", now)
	for name, err := range map[string]error{
		"other CA":      CheckServer(certPEM, other.Pool(), hosts, now),
		"missing host":  CheckServer(certPEM, ca.Pool(), []string{"10.0.0.9"}, now),
		"near expiry":   CheckServer(certPEM, ca.Pool(), hosts, now.Add(ServerValidity-RenewBefore+time.Hour)),
		"not a PEM":     CheckServer([]byte("x"), ca.Pool(), hosts, now),
		"after the end": CheckServer(certPEM, ca.Pool(), hosts, now.Add(ServerValidity+time.Hour)),
	} {
		if err == nil {
			t.Errorf("%s: certificate judged fit to keep", name)
		}
	}
}

// TestClientWithWrongCAIsRefused: a TLS server with the run's certificate
// is accepted by a client trusting the run's CA, and refused by one trusting
// another run's CA or the system's roots.
func TestClientWithWrongCAIsRefused(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "r", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	good, err := HTTPClient(filepath.Join(dir, CACertFile), "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := good.Get(srv.URL)
	if err != nil {
		t.Fatalf("client with the run's CA refused: %v", err)
	}
	resp.Body.Close()

	otherDir := t.TempDir()
	if _, err := LoadOrCreateCA(otherDir, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	wrong, err := HTTPClient(filepath.Join(otherDir, CACertFile), "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	system, _ := HTTPClient("", "", 5*time.Second)
	for name, c := range map[string]*http.Client{"another run's CA": wrong, "system roots": system} {
		_, err := c.Get(srv.URL)
		var unknown x509.UnknownAuthorityError
		if err == nil || !errors.As(err, &unknown) {
			t.Errorf("%s: got %v, want an unknown-authority refusal", name, err)
		}
	}

	// Host names are checked too: a dial by a name the certificate does
	// not carry is refused even though the chain verifies.
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), ClientConfig(ca.Pool(), "broker.elsewhere"))
	if err == nil {
		conn.Close()
		t.Error("a certificate was accepted for a name it does not carry")
	}
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("wrong name: got %v, want a host name error", err)
	}
}

func TestLoadPoolFailures(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadPool(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	if _, err := LoadPool(junk); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("junk CA file: %v", err)
	}
	if _, err := HTTPClient(junk, "", time.Second); err == nil {
		t.Error("HTTP client built from a junk CA file")
	}
	if c := ClientConfig(nil, "h"); c.InsecureSkipVerify || c.MinVersion < tls.VersionTLS12 {
		t.Errorf("client config %+v", c)
	}
}

func TestLoadOrIssueKeepsAFitCertificate(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), "r", now)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	hosts := []string{BrokerName("r"), "127.0.0.1"}
	cert1, key1, why, err := ca.LoadOrIssue(dir, "broker", hosts, now)
	if err != nil || why != "no certificate yet" {
		t.Fatalf("first issue: %q %v", why, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "broker.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", err, st)
	}
	cert2, key2, why, err := ca.LoadOrIssue(dir, "broker", hosts, now.Add(24*time.Hour))
	if err != nil || why != "kept" || string(cert1) != string(cert2) || string(key1) != string(key2) {
		t.Errorf("second call: %q %v; want the same pair kept", why, err)
	}
	// Near its end, or asked for another name, it is replaced.
	for name, c := range map[string]struct {
		hosts []string
		at    time.Time
	}{
		"near expiry": {hosts, now.Add(ServerValidity - RenewBefore/2)},
		"new host":    {append(hosts, "10.1.2.3"), now},
	} {
		cert3, _, why, err := ca.LoadOrIssue(dir, "broker", c.hosts, c.at)
		if err != nil || !strings.HasPrefix(why, "replaced") || string(cert3) == string(cert1) {
			t.Errorf("%s: %q %v; want a new certificate", name, why, err)
		}
		cert1 = cert3
	}
	if !strings.HasSuffix(BrokerName("prod"), ".invalid") || !strings.Contains(BrokerName("prod"), "prod") {
		t.Errorf("BrokerName = %q", BrokerName("prod"))
	}
}
