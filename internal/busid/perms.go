package busid

import (
	"regexp"
	"strings"
)

// Permissions is what one broker user may do in its vhost: RabbitMQ's
// three resource regexes, topic-exchange routing-key regexes, and user
// tags.
type Permissions struct {
	Configure, Write, Read string
	Topics                 []TopicPermission
	Tags                   string
}

// TopicPermission limits the routing keys a user may publish with (Write)
// and bind with (Read) on one topic exchange.
type TopicPermission struct {
	Exchange    string
	Write, Read string
}

// Binding a queue to an exchange needs write on the queue and read on the
// exchange; declaring a queue with a dead-letter exchange needs write on
// that exchange and read on the queue. Hence the dlx and dead entries of
// every role that declares the dead-letter path.

// none matches no resource name (RabbitMQ's "" would too; "^$" reads
// better in the management UI).
const none = "^$"

func names(run string) (ns, events string) {
	ns = `nightshift\.` + regexp.QuoteMeta(run) + `\.`
	return ns, "nightshift." + run + ".events"
}

// ProvisionerPermissions: declare the run's topology (including each
// worker's command queue and its job's work queue before the worker
// starts), consume its own command queue, publish instance.* events and
// RPC replies. Its administrator tag is what lets it create and delete
// worker users through the management API; with it the provisioner could
// grant itself anything, so it is as trusted as the launcher.
func ProvisionerPermissions(run string) Permissions {
	ns, events := names(run)
	return Permissions{
		Configure: `^` + ns + `.*$`,
		Write:     `^` + ns + `(events|dlx|dead)$|^amq\.default$`,
		Read:      `^` + ns + `(dlx|dead|cmd\..+)$|^amq\.rabbitmq\.reply-to$`,
		Topics:    []TopicPermission{{Exchange: events, Write: `^instance\.`, Read: none}},
		Tags:      "administrator",
	}
}

// ControllerPermissions: consume its command queue, heartbeats and
// instance events (bound on its own queues), send commands to the
// provisioner and to sitters, read queue depths through the management
// API (the management tag). It publishes no events.
func ControllerPermissions(run string) Permissions {
	ns, events := names(run)
	return Permissions{
		Configure: `^` + ns + `(events|dlx|dead|cmd\..+|sub\..+)$|^amq\.gen-.*$`,
		Write:     `^` + ns + `(dlx|dead|cmd\..+|sub\..+)$|^amq\.(default|gen-.*)$`,
		Read:      `^` + ns + `(events|dlx|dead|cmd\..+|sub\..+)$|^amq\.(gen-.*|rabbitmq\.reply-to)$`,
		Topics:    []TopicPermission{{Exchange: events, Write: none, Read: `^(heartbeat|instance)\.`}},
		Tags:      "management",
	}
}

// MgmtPermissions: the operator's tool may do anything within the run's
// names (status, logs, reconfigure, teardown, inspecting dead letters) but
// publishes no events.
func MgmtPermissions(run string) Permissions {
	ns, events := names(run)
	all := `^` + ns + `.*$|^amq\.(default|gen-.*|rabbitmq\.reply-to)$`
	return Permissions{
		Configure: all, Write: all, Read: all,
		Topics: []TopicPermission{{Exchange: events, Write: none, Read: `.*`}},
		Tags:   "management",
	}
}

// WorkerPermissions: worker instance id of job may consume only its own
// command queue and, when workQueue is set, its job's work queue; publish
// only its own heartbeats (a topic permission on the events exchange);
// declare nothing but its own command queue. It has no write on the
// default exchange, through which it could otherwise deliver a message to
// any queue it can name (the default exchange is not a topic exchange, so
// no routing-key rule could narrow it): the price is that a sitter cannot
// answer RPCs (status, tail, ping) over the bus, only act on the drain and
// control commands the controller and mgmt send it fire-and-forget.
func WorkerPermissions(run, job, id, workQueue string) Permissions {
	ns, events := names(run)
	own := ns + `cmd\.sitter\.` + regexp.QuoteMeta(id)
	read := `^` + own + `$`
	if workQueue != "" {
		read += `|^` + regexp.QuoteMeta(workQueue) + `$`
	}
	return Permissions{
		Configure: `^` + own + `$`,
		Write:     `^` + ns + `events$`,
		Read:      read,
		Topics: []TopicPermission{{Exchange: events,
			Write: `^heartbeat\.` + regexp.QuoteMeta(job) + `\.` + regexp.QuoteMeta(id) + `$`, Read: none}},
	}
}

// SimulatorPermissions: the worker simulator may publish heartbeats of the
// run's simulated jobs (those whose driver is "sim") and nothing else: no
// command queue, no other job's heartbeats, no instance events, nothing
// to consume. The controller accepts its heartbeats only for jobs it holds
// as simulated (Origin.SimHeartbeat), so it speaks for its own instances
// only.
func SimulatorPermissions(run string, jobs []string) Permissions {
	ns, events := names(run)
	write := none
	if len(jobs) > 0 {
		q := make([]string, len(jobs))
		for i, j := range jobs {
			q[i] = regexp.QuoteMeta(j)
		}
		write = `^heartbeat\.(` + strings.Join(q, "|") + `)\.[^.]+$`
	}
	return Permissions{
		Configure: none,
		Write:     `^` + ns + `events$`,
		Read:      none,
		Topics:    []TopicPermission{{Exchange: events, Write: write, Read: none}},
	}
}

// Reserved reports whether queue is one of the run's own names (command,
// subscription, dead-letter queues, the events and dead-letter exchanges),
// which a job's work queue must never be: a worker may read and so purge
// its work queue.
func Reserved(run, queue string) bool {
	ns, _ := names(run)
	return regexp.MustCompile(`^` + ns + `(events|dlx|dead|cmd\..*|sub\..*)$`).MatchString(queue)
}
