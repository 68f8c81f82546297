package busid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"nightshift/internal/brokerurl"
)

// Roles a broker user can have.
const (
	RoleProvisioner = "provisioner"
	RoleController  = "controller"
	RoleMgmt        = "mgmt"
	RoleWorker      = "worker"
	// RoleSimulator is the sim worker driver's one identity, which
	// publishes the heartbeats of all its simulated instances.
	RoleSimulator = "sim"
)

func prefix(run string) string { return "ns." + run + "." }

// ComponentUser is the broker user of a daemon of role (provisioner,
// controller) booted as plan service svc.
func ComponentUser(run, role, svc string) string { return prefix(run) + role + "." + svc }

// MgmtUser is the broker user of mgmt for run.
func MgmtUser(run string) string { return prefix(run) + RoleMgmt }

// WorkerUser is the broker user of worker instance id.
func WorkerUser(run, instanceID string) string { return prefix(run) + RoleWorker + "." + instanceID }

// SimulatorUser is the broker user of run's worker simulator (package
// simworker, inside the provisioner): one per run, as mgmt's.
func SimulatorUser(run string) string { return prefix(run) + RoleSimulator }

// WorkerPrefix starts the name of every worker user of run.
func WorkerPrefix(run string) string { return prefix(run) + RoleWorker + "." }

// RunPrefix starts the name of every user of run; a teardown deletes them.
func RunPrefix(run string) string { return prefix(run) }

// RoleOf returns the role a user name of run carries, or "" when the name
// is not one Nightshift issues for run.
func RoleOf(run, user string) string {
	rest, ok := strings.CutPrefix(user, prefix(run))
	if !ok {
		return ""
	}
	role, _, _ := strings.Cut(rest, ".")
	switch role {
	case RoleProvisioner, RoleController, RoleWorker:
		if !strings.Contains(rest, ".") {
			return ""
		}
		return role
	case RoleMgmt, RoleSimulator:
		if rest != role {
			return ""
		}
		return role
	}
	return ""
}

// Issued reports whether user is a per-component identity of run, as
// opposed to a shared one (see package doc).
func Issued(run, user string) bool { return RoleOf(run, user) != "" }

// Password derives a user's password from key (the run's secret, held by
// the provisioner), so a retried or recovered launch sets the same
// password a running worker already holds, and nothing needs storing.
func Password(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("nightshift broker user\x00" + user))
	return hex.EncodeToString(m.Sum(nil)[:18])
}

// WithUser returns raw (an amqp://, amqps://, http:// or https:// URL, or
// a cluster's list of them, package brokerurl) with its credentials
// replaced by user and pass, in every URL of a list: a cluster's nodes
// share their users.
func WithUser(raw, user, pass string) (string, error) {
	return brokerurl.Map(raw, func(one string) (string, error) {
		u, err := url.Parse(one)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("broker url: want scheme://user:pass@host:port[/vhost]")
		}
		u.User = url.UserPassword(user, pass)
		return u.String(), nil
	})
}

// VHost returns the vhost an amqp URL (or the first of a list: they name
// one) names ("/" when it names none).
func VHost(amqpURL string) string {
	u, err := url.Parse(brokerurl.First(amqpURL))
	if err != nil {
		return "/"
	}
	p := strings.TrimPrefix(u.Path, "/")
	if p == "" {
		return "/"
	}
	if v, err := url.PathUnescape(p); err == nil {
		return v
	}
	return p
}
