// A private broker on the host its service's driver gives it: the
// distribution's RabbitMQ, configured by a script the driver runs
// (hostinstall.BrokerScript) and kept alive by its systemd unit. Its
// password, ports and certificate are kept in the service's working
// directory here, as a local node's are, so a re-boot changes no URL.
// Where the driver runs the steps on this machine (ec2 against moto in
// tests), the node is a local private one.

package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/busid"
	"nightshift/internal/nsenv"
	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/hostinstall"
	"nightshift/launchplan"
)

// placed returns the driver that places a private node, or nil when it
// runs on this machine (driver local).
func (t *Type) placed(svc *launchplan.Service, cfg Config) (bootlevel.Driver, error) {
	if svc == nil || svc.Driver == "" || svc.Driver == launchplan.DriverLocal {
		return nil, nil
	}
	if cfg.Mode == "external" {
		return nil, fmt.Errorf("broker %s: an external broker runs where its url says; its service takes no driver (%q)", svc.Name, svc.Driver)
	}
	drv := t.Drivers[svc.Driver]
	if drv == nil {
		return nil, fmt.Errorf("broker %s: driver %q is not available to built-in types here", svc.Name, svc.Driver)
	}
	return drv, nil
}

// here reports whether drv runs the service's steps on this machine.
func here(drv bootlevel.Driver, svc *launchplan.Service) bool {
	h, ok := drv.(interface {
		StepsHere(*launchplan.Service) bool
	})
	return ok && h.StepsHere(svc)
}

// away is the driver of a node that runs on another host, or nil.
func (t *Type) away(svc *launchplan.Service, cfg Config) (bootlevel.Driver, error) {
	drv, err := t.placed(svc, cfg)
	if err != nil || drv == nil || here(drv, svc) {
		return nil, err
	}
	if cfg.Nodes > 1 {
		return nil, fmt.Errorf("broker %s: config.nodes: a cluster of nodes runs on this host only, not through driver %q", svc.Name, svc.Driver)
	}
	return drv, nil
}

// install boots the node on its host through drv.
func (t *Type) install(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, cfg Config, lg *stepLog) (map[string]string, error) {
	host := req.Host.Hostname
	if host == "" {
		return nil, errors.New("the driver gave the broker's host no address")
	}
	dir := t.dir(req)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	prev, _ := loadState(dir)
	pass, mgmtPass := prev.Password, prev.MgmtPassword
	var err error
	if pass == "" || prev.User != cfg.User {
		if pass, err = password(); err != nil {
			return nil, err
		}
	}
	if mgmtPass == "" {
		if mgmtPass, err = password(); err != nil {
			return nil, err
		}
	}
	port, mport := cfg.Port, cfg.ManagementPort
	if port == 0 {
		port = 5672
		if cfg.TLS {
			port = 5671
		}
	}
	if mport == 0 {
		mport = 15672
		if cfg.TLS {
			mport = 15671
		}
	}
	b := hostinstall.Broker{User: cfg.User, Password: pass, Port: port, ManagementPort: mport}
	runCA := ""
	if cfg.TLS {
		home := t.Home
		if home == "" {
			home = os.Getenv(nsenv.Home)
		}
		if home == "" {
			return nil, errors.New("tls: no Nightshift home to keep the run's CA in ($NIGHTSHIFT_HOME is not set)")
		}
		now := time.Now()
		caDir := runlayout.Of(home, req.Run).PKI()
		ca, err := pki.LoadOrCreateCA(caDir, req.Run, now)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		// Clients verify the run's broker name (server_name_indication);
		// the addresses are there for those that do not send it.
		names := []string{pki.BrokerName(req.Run), host, "localhost", "127.0.0.1"}
		for _, k := range []string{"private_ip", "public_ip", "public_dns"} {
			if v := req.Host.Attrs[k]; v != "" && v != host {
				names = append(names, v)
			}
		}
		tlsDir := filepath.Join(dir, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			return nil, err
		}
		cert, key, why, err := ca.LoadOrIssue(tlsDir, "server", names, now)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		lg.printf("tls: broker certificate for %s from the run's CA: %s", strings.Join(names, ", "), why)
		b.CA, b.Cert, b.Key = ca.CertPEM, cert, key
		runCA = filepath.Join(caDir, pki.CACertFile)
	}
	if err := saveState(dir, nodeState{User: cfg.User, Password: pass, MgmtPassword: mgmtPass, Port: port, ManagementPort: mport, Booted: time.Now()}); err != nil {
		return nil, err
	}
	script, err := hostinstall.BrokerScript(b)
	if err != nil {
		return nil, err
	}
	lg.printf("installing RabbitMQ on %s (unit %s)", host, hostinstall.BrokerUnit)
	if err := runScript(ctx, drv, req, dir, "install-broker.sh", script); err != nil {
		return nil, err
	}
	scheme, mgmtScheme, query := "amqp", "http", ""
	if cfg.TLS {
		scheme, mgmtScheme, query = "amqps", "https", "server_name_indication="+pki.BrokerName(req.Run)
	}
	addr := host + ":" + strconv.Itoa(port)
	u := &url.URL{Scheme: scheme, User: url.UserPassword(cfg.User, pass), Host: addr, Path: "/", RawQuery: query}
	mgmtAMQP := &url.URL{Scheme: scheme, User: url.UserPassword(busid.MgmtUser(req.Run), mgmtPass), Host: addr, Path: "/", RawQuery: query}
	mgmtURL := &url.URL{Scheme: mgmtScheme, User: url.UserPassword(cfg.User, pass), Host: host + ":" + strconv.Itoa(mport)}
	lg.printf("broker on %s://%s (management %s port %d)", scheme, addr, mgmtScheme, mport)
	return map[string]string{
		"url": u.String(), "mgmt_url": mgmtAMQP.String(), "host": host, "port": strconv.Itoa(port),
		"management_url": mgmtURL.String(), "node": "rabbit@" + host, "mode": "private",
		"user": cfg.User, "password": pass, "data_dir": "", "ca_file": runCA, "unit": hostinstall.BrokerUnit,
	}, nil
}

// uninstall stops the node on its host and removes its configuration.
func (t *Type) uninstall(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, lg *stepLog) error {
	dir := t.dir(req)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lg.printf("stopping RabbitMQ on %s", req.Host.Hostname)
	return runScript(ctx, drv, req, dir, "uninstall-broker.sh", hostinstall.BrokerStopScript())
}

// runScript writes script to a private file and runs it as the service's
// step through drv.
func runScript(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, dir, name, script string) error {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		return err
	}
	defer os.Remove(p)
	sreq := req
	sreq.Program = launchplan.Program{Path: p, Pos: req.Service.Pos}
	res, err := drv.Run(ctx, sreq)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s exited %d: %s", name, res.ExitCode, strings.Join(res.Tail, " | "))
	}
	return nil
}
