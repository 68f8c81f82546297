// Package pki owns a run's TLS material: the run's own certificate
// authority, created once per run with crypto/x509 and kept (key 0600) in the
// launcher's run directory, the broker certificates it issues, and the client
// side: a CA file turned into a pool and a tls.Config that always verifies the
// chain and the host name. Nothing here ever disables verification.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Validity of what this package issues. A run's CA outlives any broker
// certificate it signs, and a kept broker certificate is replaced by a fresh
// one on the next boot once it is within RenewBefore of expiring.
const (
	CAValidity     = 5 * 365 * 24 * time.Hour
	ServerValidity = 397 * 24 * time.Hour
	RenewBefore    = 30 * 24 * time.Hour
	// skew back-dates NotBefore, so hosts whose clocks lag a little still
	// accept a certificate issued a moment ago.
	skew = 5 * time.Minute
)

// File names inside a CA directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// CA is a run's certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// LoadOrCreateCA returns the CA kept in dir, creating it (directory 0700, key
// 0600, certificate 0644) when dir holds none. A CA whose key does not match
// its certificate is an error, never silently replaced: every client of the
// run trusts the certificate already handed out.
func LoadOrCreateCA(dir, run string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		return parseCA(certPEM, keyPEM, certPath)
	}
	if cerr != nil && !errors.Is(cerr, os.ErrNotExist) {
		return nil, fmt.Errorf("read CA: %w", cerr)
	}
	if kerr != nil && !errors.Is(kerr, os.ErrNotExist) {
		return nil, fmt.Errorf("read CA key: %w", kerr)
	}
	if cerr == nil {
		return nil, fmt.Errorf("CA %s has no key %s: remove the certificate to make a new CA", certPath, keyPath)
	}
	// No certificate: a key alone is what a crash between the two writes
	// leaves (the certificate is written last), and nobody trusts it yet.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Nightshift"}, CommonName: "Nightshift run " + run + " CA"},
		NotBefore:             now.Add(-skew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs broker certificates only, never another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseCA(certPEM, keyPEM, certPath)
}

func parseCA(certPEM, keyPEM []byte, certPath string) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("CA %s: not a CA certificate", certPath)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("CA key beside %s: no PEM block", certPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key beside %s: %w", certPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key beside %s: %T cannot sign", certPath, k)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key beside %s does not match the certificate", certPath)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: signer}, nil
}

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServer issues a server certificate for hosts (DNS names and IP
// addresses) with a fresh ECDSA P-256 key. The key comes back PEM-encoded in
// SEC 1 form ("EC PRIVATE KEY"), which both Go and Erlang (RabbitMQ) read.
func (ca *CA) IssueServer(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("issue server certificate: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("server key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ServerValidity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Nightshift"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// LoadOrIssue returns the server certificate and key kept in dir as
// base.pem and base.key, issuing (and keeping, key 0600) a new pair when
// there is none or the kept one is unfit for hosts (see CheckServer). A
// re-boot thus keeps its certificate as long as it may. reason says what
// happened, for the caller's log.
func (ca *CA) LoadOrIssue(dir, base string, hosts []string, now time.Time) (certPEM, keyPEM []byte, reason string, err error) {
	certPath, keyPath := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	oldCert, cerr := os.ReadFile(certPath)
	oldKey, kerr := os.ReadFile(keyPath)
	reason = "no certificate yet"
	if cerr == nil && kerr == nil {
		why := CheckServer(oldCert, ca.Pool(), hosts, now)
		if why == nil {
			_, why = tls.X509KeyPair(oldCert, oldKey)
		}
		if why == nil {
			return oldCert, oldKey, "kept", nil
		}
		reason = "replaced: " + why.Error()
	}
	if certPEM, keyPEM, err = ca.IssueServer(hosts, now); err != nil {
		return nil, nil, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, "", err
	}
	if err := WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, "", err
	}
	if err := WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, nil, "", err
	}
	return certPEM, keyPEM, reason, nil
}

// BrokerName is the DNS name a run's broker certificate carries when
// clients reach the broker by an address not known when the certificate is
// made (an EC2 instance's private IP): they dial the address and verify this
// name, given as the amqps:// URL's server_name_indication. The .invalid
// top-level domain never resolves, so the name cannot lead anywhere else.
func BrokerName(run string) string { return "broker." + run + ".nightshift.invalid" }

// CheckServer reports why certPEM cannot keep serving hosts: it does not
// chain to pool, it expires within RenewBefore of now, or a host is missing
// from its names. nil means the certificate may be kept.
func CheckServer(certPEM []byte, pool *x509.CertPool, hosts []string, now time.Time) error {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := cert.Verify(opts); err != nil {
		return err
	}
	if now.Add(RenewBefore).After(cert.NotAfter) {
		return fmt.Errorf("certificate expires %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, h := range hosts {
		if err := cert.VerifyHostname(h); err != nil {
			return err
		}
	}
	return nil
}

// ParseCert decodes the first certificate of a PEM block list.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// LoadPool reads a PEM CA file into a pool of its own: the system's roots
// are deliberately not included, so only the run's CA can vouch for its
// broker.
func LoadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// ClientConfig is the TLS configuration of every Nightshift client:
// the chain must verify against pool (nil means the system's roots) and the
// certificate must name serverName.
func ClientConfig(pool *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// HTTPClient returns an HTTP client for a management API whose certificate
// chains to the CA in caFile and names serverName (empty: the URL's host);
// an empty caFile gives a plain client with the system's roots (for http://
// URLs and public brokers).
func HTTPClient(caFile, serverName string, timeout time.Duration) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{Timeout: timeout}, nil
	}
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = ClientConfig(pool, serverName)
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// WriteFile replaces path with data at mode, through a temporary file and a
// rename, so a reader never sees half a key or certificate. An existing
// file with equal content and mode is left alone.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, mode)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
